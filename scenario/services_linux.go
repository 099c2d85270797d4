package scenario

import (
	"os/exec"
	"runtime"
	"syscall"
)

// groupAttr puts a service in its own process group, so that stopping it
// reaches what it started and a Ctrl-C meant for the runner does not; and
// has the kernel kill it if the runner dies before it can stop it.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends SIGTERM (or SIGKILL) to the process group pid leads:
// only groups of services this run started.
func signalGroup(pid int, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-pid, sig)
}

// spawner starts the run's processes from one OS thread that lives until
// stop. The kernel sends a child its Pdeathsig when the thread that forked
// it ends, not the process, and Go ends threads: a goroutine that exits
// locked to its thread takes the thread with it, as the eBPF backend's
// niced decoders do in the embedded agent. A service forked from such a
// thread was SIGKILLed in the middle of the run.
type spawner struct {
	reqs chan func()
	done chan struct{}
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan func()), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for f := range s.reqs {
			f()
		}
		close(s.done)
	}()
	return s
}

// start starts cmd from the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s.reqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// stop ends the spawner, once every process it started has been stopped.
func (s *spawner) stop() {
	close(s.reqs)
	<-s.done
}
