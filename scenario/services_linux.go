package scenario

import "syscall"

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
