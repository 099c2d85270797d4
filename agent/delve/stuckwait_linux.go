package delve

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Delve stops the process at a trap by sending SIGSTOP to every thread it
// believes running, then waits (wait4 on any tracee) until each of them has
// reported a stop. A thread that exits instead is reaped inside that wait,
// which then goes on waiting rather than looking again whether any thread
// is left running (pkg/proc/native, trapWaitInternal, v1.27.2). If the exit
// was the last event to come, every thread is already in a tracing stop:
// nothing will ever report again, and Continue never returns. The target
// stays stopped for good and every command waits on it: a stressed run of
// the selfcheck target (a thread ending every 200 ms, a tracepoint hit
// 1000 times a second) met it about once a minute; a Go program ends a
// thread whenever a goroutine locked to it returns.
//
// unstick watches for that state while Continue runs: a thread of this
// process asleep in wait4 for any tracee, and every thread of the target
// in a tracing stop, seen alike over a few ticks. A wait that has an event
// to take is never asleep, so that state is a wait that nothing can end.
// It then gives the wait an event: one stopped thread is resumed with a
// SIGURG queued to it, which it takes before it runs any code of its own,
// stopping again at once. Delve, halting, keeps the signal for the
// thread's next resume (not halting, it delivers it at once): the Go
// runtime ignores a SIGURG it did not ask for.

const (
	stuckTick  = 100 * time.Millisecond
	stuckTicks = 3 // ticks in a row that must see the stuck state
)

// unstick watches Continue until done is closed (see above). dbp is
// Delve's native process, read before Continue began (see nativeProcessOf).
func (t *target) unstick(dbp unsafe.Pointer, done <-chan struct{}) {
	tick := time.NewTicker(stuckTick)
	defer tick.Stop()
	seen := 0
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if !waitAsleep() {
			seen = 0
			continue
		}
		tid := allTraceStopped(t.pid)
		if tid == 0 {
			seen = 0
			continue
		}
		if seen++; seen < stuckTicks {
			continue
		}
		seen = 0
		if err := wake(dbp, t.pid, tid); err != nil {
			fmt.Fprintf(os.Stderr, "riptrace delve worker for pid %d: Delve waits for a thread stop that cannot come; waking it through thread %d failed: %v\n", t.pid, tid, err)
		}
	}
}

// wake resumes the stopped thread tid of pid with a SIGURG queued to it
// (see above), on the tracing thread. Delve, asleep in its wait, makes no
// ptrace request meanwhile.
func wake(dbp unsafe.Pointer, pid, tid int) error {
	var err error
	execPtraceFunc(dbp, func() {
		if err = unix.Tgkill(pid, tid, unix.SIGURG); err != nil {
			return
		}
		err = unix.PtraceCont(tid, 0)
	})
	return err
}

// waitAsleep reports whether a thread of this process sleeps in wait4 for
// any child (pid -1): Delve's wait for its tracees.
func waitAsleep() bool {
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		sc, err := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		if err != nil {
			continue
		}
		f := strings.Fields(string(sc))
		if len(f) < 2 || f[0] != strconv.Itoa(unix.SYS_WAIT4) || f[1] != "0xffffffffffffffff" {
			continue
		}
		if taskState("/proc/self/task/"+task.Name()+"/stat") == 'S' {
			return true
		}
	}
	return false
}

// allTraceStopped returns a thread of pid if every thread of pid is in a
// tracing stop, else 0.
func allTraceStopped(pid int) int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return 0
	}
	tid := 0
	for _, task := range tasks {
		if taskState(dir+"/"+task.Name()+"/stat") != 't' {
			return 0
		}
		tid, _ = strconv.Atoi(task.Name())
	}
	return tid
}

// taskState reads the state letter of a /proc stat file, 0 if unreadable.
func taskState(stat string) byte {
	b, err := os.ReadFile(stat)
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}
