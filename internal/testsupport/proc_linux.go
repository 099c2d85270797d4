package testsupport

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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
