package testsupport

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// sysProcAttr makes targets die with the test process, so an aborted test run
// leaves no target running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// The death signal comes when the thread that started the child ends, not
// the process: code under test ends threads (a goroutine that exits locked
// to its thread, as Delve's ptrace thread and the eBPF decoder do), and a
// target started from such a thread was SIGKILLed with it. Every target is
// started from one thread that lives as long as the test process.
var spawns = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread() // never unlocked: this thread never ends
		for fn := range spawns {
			fn()
		}
	}()
}

// startCmd starts c from the spawning thread.
func startCmd(c *exec.Cmd) error {
	done := make(chan error)
	spawns <- func() { done <- c.Start() }
	return <-done
}

// exited reports whether the process is a zombie or gone, from
// /proc/<pid>/stat.
func (p *Proc) exited() bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain parentheses and spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return true
	}
	state := stat[i+2]
	return state == 'Z' || state == 'X'
}

// pipeHolders names the processes that hold an end of the pipe r reads, from
// their /proc/<pid>/fd links: "pid 123 (riptrace-delve-worker target=45)".
func pipeHolders(r *os.File) string {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(r.Fd()), &st); err != nil {
		return fmt.Sprintf("nobody known (%v)", err)
	}
	want := fmt.Sprintf("pipe:[%d]", st.Ino)
	self := os.Getpid()
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := map[string]bool{}
	var names []string
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err != nil || link != want {
			continue
		}
		pid := strings.Split(fd, "/")[2]
		if seen[pid] || pid == fmt.Sprint(self) {
			continue
		}
		seen[pid] = true
		cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		names = append(names, fmt.Sprintf("pid %s (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
	}
	if len(names) == 0 {
		return "nobody outside the test process"
	}
	return strings.Join(names, ", ")
}

// heldByTracer names the process that traces this one, if another than
// ours: the kernel tells a traced process's parent of its exit only once its
// tracer has been told and let go of it, so until then waiting for it would
// block.
func (p *Proc) heldByTracer() string {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		v, ok := strings.CutPrefix(line, "TracerPid:")
		if !ok {
			continue
		}
		tracer := strings.TrimSpace(v)
		if tracer == "0" || tracer == fmt.Sprint(os.Getpid()) {
			return ""
		}
		cmdline, _ := os.ReadFile("/proc/" + tracer + "/cmdline")
		return fmt.Sprintf("pid %s (%s)", tracer, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return ""
}
