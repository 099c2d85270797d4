//go:build !linux

package testsupport

import (
	"os"
	"os/exec"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func startCmd(c *exec.Cmd) error { return c.Start() }

// exited reports whether the process has closed its stdout: without /proc,
// that is the best sign of an exit that has not been reaped yet.
func (p *Proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eof
}

// pipeHolders cannot look through /proc here.
func pipeHolders(*os.File) string { return "processes this system cannot list" }

// heldByTracer is not known without /proc.
func (p *Proc) heldByTracer() string { return "" }
