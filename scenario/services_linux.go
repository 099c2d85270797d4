package scenario

import (
	"fmt"
	"io"
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
//
// Each process it starts leads a process group, which its watchdog
// watches until the runner stops it (forget).
type spawner struct {
	reqs chan func()
	done chan struct{}
	// dog is started with the first process; nil if it could not be.
	// Only the spawner's thread sets it.
	dog *watchdog
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

// start starts cmd, which leads a process group (groupAttr), from the
// spawner's thread; the watchdog watches its group from then on.
func (s *spawner) start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	s.reqs <- func() {
		if s.dog == nil {
			// Without a shell to watch, Pdeathsig is all that is left.
			s.dog, _ = startWatchdog()
		}
		err := cmd.Start()
		if err == nil && s.dog != nil {
			s.dog.send("+", cmd.Process.Pid)
		}
		errc <- err
	}
	return <-errc
}

// forget tells the watchdog that the group pid leads has been stopped.
func (s *spawner) forget(pid int) {
	s.reqs <- func() {
		if s.dog != nil {
			s.dog.send("-", pid)
		}
	}
}

// stop ends the spawner, once every process it started has been stopped.
func (s *spawner) stop() {
	s.reqs <- func() {
		if s.dog != nil {
			s.dog.stop()
		}
	}
	close(s.reqs)
	<-s.done
}

// A watchdog kills the run's process groups when the runner dies without
// stopping them: SIGKILL leaves it no time to, and the kernel's Pdeathsig
// reaches only the processes the runner forked, not those they started.
// It is a shell in a group of its own that reads "+ PGID" and "- PGID"
// lines on its stdin and, at end of file, which the runner's death brings
// as its end of the pipe closes, kills the groups it was told of and not
// told to forget. A group is forgotten once stopped, and the watchdog is
// killed once the runner stopped every group itself, so that a group id
// freed and used again is never signalled.
type watchdog struct {
	cmd *exec.Cmd
	in  io.WriteCloser
}

// watchdogScript is the watchdog; it ignores the signals of a terminal
// (Ctrl-C is the runner's to handle, and it stops the groups itself).
const watchdogScript = `trap '' INT TERM HUP
pgs=' '
while read -r op pg; do
	case $op in
	+) pgs="$pgs-$pg " ;;
	-) case $pgs in *" -$pg "*) pgs="${pgs%% -$pg *} ${pgs#* -$pg }" ;; esac ;;
	esac
done
[ -z "${pgs## }" ] || kill -9 $pgs 2>/dev/null`

func startWatchdog() (*watchdog, error) {
	cmd := exec.Command("sh", "-c", watchdogScript)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the watchdog of the run's processes: %w", err)
	}
	return &watchdog{cmd: cmd, in: in}, nil
}

func (d *watchdog) send(op string, pgid int) { fmt.Fprintf(d.in, "%s %d\n", op, pgid) }

// stop kills the watchdog before its stdin closes: it signals nothing.
func (d *watchdog) stop() {
	d.cmd.Process.Kill()
	d.cmd.Wait()
}
