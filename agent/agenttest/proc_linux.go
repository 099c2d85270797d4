package agenttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/riptrace/riptrace/agent/delve"
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

// StartAs is [Start] with the process running as cred's user and groups.
// That user must be able to reach bin: binaries from [BuildTarget] and
// [Alias] sit in directories only their owner may enter.
func StartAs(t testing.TB, cred *syscall.Credential, bin string, args ...string) *Proc {
	t.Helper()
	return start(t, func(c *exec.Cmd) { c.SysProcAttr.Credential = cred }, bin, args...)
}

// TracerPid returns the pid tracing pid, or 0 when none does or the process
// is gone.
func TracerPid(pid int) int { return delve.TracerPid(pid) }

// TraceStopped reports whether any thread of pid, and whether every one, is
// in a ptrace stop (state t in /proc/PID/task/TID/stat).
func TraceStopped(pid int) (anyThread, every bool) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	every = len(tasks) > 0
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 't' {
			anyThread = true
		} else {
			every = false
		}
	}
	return anyThread, every
}
