package delve

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// threadStatus is what /proc says of a thread's (or a process's main
// thread's) stop and tracer.
type threadStatus struct {
	TID    int
	State  string // as /proc shows it: "S (sleeping)", "t (tracing stop)"
	Tracer int    // the tracing thread; 0 if none
}

// Stopped reports whether the thread is in a stop, traced or not.
func (s threadStatus) Stopped() bool {
	return strings.HasPrefix(s.State, "t") || strings.HasPrefix(s.State, "T")
}

// readStatus reads the status of thread tid of pid (of pid's main thread
// if tid is 0); ok is false if it is gone.
func readStatus(pid, tid int) (s threadStatus, ok bool) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	if tid != 0 {
		path = fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return threadStatus{}, false
	}
	s.TID = tid
	if tid == 0 {
		s.TID = pid
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "State:"); ok {
			s.State = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			s.Tracer, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return s, true
}

// threadStatuses reads the status of every thread of pid still there.
func threadStatuses(pid int) []threadStatus {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []threadStatus
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if s, ok := readStatus(pid, tid); ok { // else ended meanwhile
			out = append(out, s)
		}
	}
	return out
}
