package testsupport

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Timeouts for targets: getting ready is a fresh binary starting up, stopping
// is a graceful shutdown.
const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// Proc is a process a test started: a target with [Start] and [StartWith],
// a command with [Launch]. Its stdout and stderr are kept, for the test to
// wait for lines in them; the test's cleanup kills and reaps it.
//
// Nothing waits for a target in the background, on purpose: a debugger in
// the test process (Delve, through ptrace) learns of the target's stops from
// wait4, and any other waiter in the same process would take those stops from
// it. A target is reaped only once it has exited (gone or a zombie), by
// Wait, Stop or the test's cleanup. So while a debugger in this process is
// attached, use Alive and WaitOutput, and detach before Wait or Stop. Delve
// itself may reap the process first (it waits for any child); Alive copes
// with that, and Wait reports it. A command, which no debugger in the test
// process traces, is reaped as soon as it exits.
type Proc struct {
	Cmd  *exec.Cmd
	Pid  int
	Addr string // addr= of the READY line; "" if there was none

	pipes   [2]*os.File    // read ends of stdout and stderr
	drained sync.WaitGroup // the goroutines draining pipes

	reapOnce sync.Once
	reapErr  error         // of Cmd.Wait; set in reapOnce
	reaped   chan struct{} // a command's: closed once it is reaped; nil for a target
	waited   atomic.Bool   // Cmd.Wait has returned: the process itself is gone
	holders  atomic.Value  // string: who kept the output open after the process exited

	mu      sync.Mutex // guards the fields below
	stdout  []byte
	stderr  []byte
	eof     bool          // stdout is closed: the process has exited or is exiting
	changed chan struct{} // closed and replaced when an output grows or ends, or a command exits
}

// Start starts bin with args and waits up to 30s for its READY line,
// "READY pid=<pid> [addr=<host:port>]". It fails the test, with the process's
// output, if the process exits first, does not get ready in time or reports
// another pid. Stdout is drained from then on (read it with Output), and the
// test's cleanup kills and reaps the process.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	return StartWith(t, nil, bin, args...)
}

// StartWith is Start with setup applied to the command before it starts.
func StartWith(t testing.TB, setup func(*exec.Cmd), bin string, args ...string) *Proc {
	t.Helper()
	p := launch(t, setup, false, bin, args...)
	p.awaitReady(t, bin)
	return p
}

// Launch starts a command (bin with args, setup applied first) that no
// debugger in the test process will trace, without waiting for anything:
// wait for its output with Await, for its exit with ExitCode.
func Launch(t testing.TB, setup func(*exec.Cmd), bin string, args ...string) *Proc {
	t.Helper()
	return launch(t, setup, true, bin, args...)
}

func launch(t testing.TB, setup func(*exec.Cmd), reap bool, bin string, args ...string) *Proc {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	p := &Proc{Cmd: exec.Command(bin, args...), changed: make(chan struct{})}
	// Our own pipes, not Cmd's, so that Cmd.Wait never waits for copying.
	p.Cmd.Stdout, p.Cmd.Stderr = outW, errW
	p.Cmd.SysProcAttr = sysProcAttr()
	if setup != nil {
		setup(p.Cmd)
	}
	err = startCmd(p.Cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	p.Pid = p.Cmd.Process.Pid
	p.pipes = [2]*os.File{outR, errR}
	p.drained.Add(2)
	go p.drain(outR, true)
	go p.drain(errR, false)
	if reap {
		p.reaped = make(chan struct{})
		go func() {
			p.reap()
			p.mu.Lock()
			close(p.reaped)
			p.wakeLocked()
			p.mu.Unlock()
		}()
	}
	t.Cleanup(func() {
		if err := p.kill(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// awaitReady waits for the READY line and checks it.
func (p *Proc) awaitReady(t testing.TB, bin string) {
	t.Helper()
	var ready string
	err := p.waitOutput(readyTimeout, func(out string) bool {
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, "READY ") && strings.HasSuffix(line, "\n") {
				ready = strings.TrimSpace(line)
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("%s did not print its READY line: %v\n%s", bin, err, p.outputs())
	}
	for _, f := range strings.Fields(ready)[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "pid":
			if pid, err := strconv.Atoi(v); err != nil || pid != p.Pid {
				t.Fatalf("%s started as pid %d but says %q", bin, p.Pid, ready)
			}
		case "addr":
			p.Addr = v
		}
	}
}

func (p *Proc) drain(r *os.File, stdout bool) {
	defer p.drained.Done()
	defer r.Close()
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		p.mu.Lock()
		if stdout {
			p.stdout = append(p.stdout, buf[:n]...)
			p.eof = err != nil
		} else {
			p.stderr = append(p.stderr, buf[:n]...)
		}
		p.wakeLocked()
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// wakeLocked wakes every waiter. Lock should be held.
func (p *Proc) wakeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Output returns what the process has written to stdout so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.stdout)
}

// Stderr returns what the process has written to stderr so far.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.stderr)
}

func (p *Proc) outputs() string {
	return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", p.Output(), p.Stderr())
}

// WaitOutput waits until the process's stdout contains substr, and fails the
// test if the process closes stdout (exits) or timeout passes first.
func (p *Proc) WaitOutput(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	err := p.waitOutput(timeout, func(out string) bool { return strings.Contains(out, substr) })
	if err != nil {
		t.Fatalf("waiting for %q from pid %d: %v\n%s", substr, p.Pid, err, p.outputs())
	}
}

// waitOutput waits until ok accepts stdout, woken by every write to it.
func (p *Proc) waitOutput(timeout time.Duration, ok func(out string) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		out, eof, changed := string(p.stdout), p.eof, p.changed
		p.mu.Unlock()
		if ok(out) {
			return nil
		}
		if eof {
			return errors.New("the process closed stdout (exited?)")
		}
		select {
		case <-changed:
		case <-timer.C:
			return fmt.Errorf("timed out after %v", timeout)
		}
	}
}

// Alive reports whether the process still runs: it has neither exited (as a
// zombie or reaped, by us or by a debugger) nor been replaced by another
// process with the same pid.
func (p *Proc) Alive() bool {
	// Signalling through the process's pidfd fails once it is reaped, even if
	// its pid has been reused since.
	if err := p.Cmd.Process.Signal(syscall.Signal(0)); err != nil {
		return false
	}
	return !p.exited()
}

// Wait waits up to timeout for the process to exit, reaps it, and returns the
// error of [exec.Cmd.Wait]: nil if it exited with status 0. Afterwards
// Cmd.ProcessState holds how it ended, unless a debugger reaped it first.
// See [Proc] for why not to call Wait while a debugger is attached.
func (p *Proc) Wait(timeout time.Duration) error {
	if p.reaped != nil {
		select {
		case <-p.reaped:
			return p.reapErr
		case <-time.After(timeout):
			return fmt.Errorf("pid %d still running after %v", p.Pid, timeout)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		tracer := ""
		if !p.Alive() {
			if tracer = p.heldByTracer(); tracer == "" {
				break
			}
		}
		if time.Now().After(deadline) {
			if tracer != "" {
				return fmt.Errorf("pid %d exited, but its tracer %s has not let go of it after %v, so it cannot be reaped: a debugger left attached", p.Pid, tracer, timeout)
			}
			return fmt.Errorf("pid %d still running after %v", p.Pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.reap()
	return p.reapErr
}

// reap waits for the process, once, and for its output.
func (p *Proc) reap() {
	p.reapOnce.Do(func() {
		err := p.Cmd.Wait()
		p.waited.Store(true)
		if err != nil {
			p.reapErr = fmt.Errorf("waiting for pid %d: %w", p.Pid, err)
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				p.reapErr = fmt.Errorf("%w (if a debugger in this process was attached, it may have reaped the process)", p.reapErr)
			}
		}
		p.waitDrained()
	})
}

// ErrKilled is Stop's error when the process did not stop on SIGTERM.
var ErrKilled = fmt.Errorf("still running %v after SIGTERM: killed it", stopTimeout)

// Stop sends SIGTERM and waits up to 10s for the process to exit, killing it
// if it does not; it returns the error of Wait (nil if the process exited with
// status 0), or one that wraps ErrKilled if it had to kill the process.
func (p *Proc) Stop() error {
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping pid %d: %w", p.Pid, err)
	}
	if err := p.Wait(stopTimeout); err != nil && p.Alive() {
		if err := p.kill(); err != nil {
			return err
		}
		return fmt.Errorf("stopping pid %d: %w", p.Pid, ErrKilled)
	}
	return p.Wait(0)
}

// kill kills the process and reaps it; the exit status does not matter.
func (p *Proc) kill() error {
	if err := p.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing pid %d: %w", p.Pid, err)
	}
	if err := p.Wait(stopTimeout); err != nil && (p.Alive() || !p.waited.Load()) {
		return fmt.Errorf("killing pid %d: %w", p.Pid, err)
	}
	return nil
}

// waitDrained waits for the drain goroutines, which end once every writer of
// the pipes has exited. A child of the target could keep them open: then it
// closes the pipes, which ends the reads.
func (p *Proc) waitDrained() {
	done := make(chan struct{})
	go func() {
		p.drained.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		p.holders.Store(pipeHolders(p.pipes[0]))
		p.pipes[0].Close()
		p.pipes[1].Close()
		<-done
	}
}

// Lingering says why a command that was asked to stop is not reaped yet:
// "" while it still runs, or that it exited but something else (a child it
// started, say) keeps its output open, naming the holders once known. The
// two are different bugs: an agent that will not stop, or one that leaks a
// process past its own end.
func (p *Proc) Lingering() string {
	if !p.waited.Load() {
		return ""
	}
	h, _ := p.holders.Load().(string)
	if h == "" {
		h = "not known yet"
	}
	return "it exited, but its output is still held open by " + h
}

// Await waits until ok accepts the process's output so far, woken by every
// write and by its exit. It fails the test, saying it waited for what, if
// the process exits first or timeout passes.
func (p *Proc) Await(t testing.TB, timeout time.Duration, what string, ok func(stdout, stderr string) bool) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		stdout, stderr, changed := string(p.stdout), string(p.stderr), p.changed
		p.mu.Unlock()
		if ok(stdout, stderr) {
			return
		}
		if p.ended() {
			if ok(p.Output(), p.Stderr()) {
				return
			}
			t.Fatalf("%s exited (%v) while the test waited for %s\n--- stderr:\n%s", p.name(), p.reapErr, what, p.Stderr())
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("%s: no %s within %v\n--- stderr:\n%s", p.name(), what, timeout, p.Stderr())
		}
	}
}

// Exited is closed once a command has exited and been reaped; it is nil
// for a target, which nothing reaps in the background.
func (p *Proc) Exited() <-chan struct{} { return p.reaped }

// ended reports whether a command was reaped, or a target's stdout closed.
func (p *Proc) ended() bool {
	if p.reaped != nil {
		select {
		case <-p.reaped:
			return true
		default:
			return false
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eof
}

// ExitCode waits up to timeout for the process to exit and returns its exit
// status; it fails the test if the process runs on, or did not exit by
// itself (a signal).
func (p *Proc) ExitCode(t testing.TB, timeout time.Duration) int {
	t.Helper()
	err := p.Wait(timeout)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v\n--- stderr:\n%s", p.name(), err, p.Stderr())
	return -1
}

func (p *Proc) name() string { return strings.Join(p.Cmd.Args, " ") }
