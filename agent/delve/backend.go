package delve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// Backend attaches with Delve over ptrace, one worker process per target.
type Backend struct {
	exe    string
	stderr io.Writer
	budget float64 // see SetStopBudget

	// int3 says that workers use Delve's breakpoints, each with a
	// watchdog, because this host refuses uprobes (see uprobeErr) or
	// RIPTRACE_DELVE_MODE=int3 asks for them.
	modeOnce  sync.Once
	int3      bool
	uprobeErr error

	// mu guards watchdogs: per pid, closed when its last watchdog exited.
	mu        sync.Mutex
	watchdogs map[int]<-chan struct{}
}

// New returns the Delve backend. Workers are this executable re-run, so the
// program must call MaybeRunWorker first thing in main. Worker logs go to
// stderr.
func New(stderr io.Writer) *Backend {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return &Backend{exe: exe, stderr: stderr, watchdogs: make(map[int]<-chan struct{})}
}

// Mode names how this backend stops a thread at a tracepoint: "uprobe"
// (a kernel uprobe signals the thread, which alone stops; nothing of ours
// stays in the process if a worker dies) or "int3" (Delve's breakpoints,
// which stop the whole process, with a watchdog per worker), and why it is
// not "uprobe".
func (b *Backend) Mode() (mode string, why error) {
	b.modeOnce.Do(func() {
		if os.Getenv(modeEnv) == modeInt3 {
			b.int3, b.uprobeErr = true, fmt.Errorf("%s=%s", modeEnv, modeInt3)
			return
		}
		if err := uprobesAvailable(); err != nil {
			b.int3, b.uprobeErr = true, err
			fmt.Fprintf(b.stderr, "riptrace delve: no uprobes here (%v): tracepoints use Delve's breakpoints, which a killed worker can leave in the process (a watchdog repairs it; see the Delve backend's doc)\n", err)
		}
	})
	if b.int3 {
		return modeInt3, b.uprobeErr
	}
	return modeUprobe, nil
}

// SetStopBudget sets the fraction of each second a target may spend stopped
// by its tracepoints (0 or less: no budget), for the
// targets attached from now on. Past it, hits are dropped before capture,
// and a tracepoint whose traps alone cost more is removed with the reason.
// The agent calls it with its Config.StopBudget.
func (b *Backend) SetStopBudget(fraction float64) {
	b.budget = fraction
}

// Attach starts a worker for pid and waits until it is attached. In int3
// mode it starts the worker's watchdog first, and if an earlier worker for
// pid died, it waits for that worker's watchdog to have restored the
// process's text: a new worker must never take a stray int3 for the
// original instruction.
func (b *Backend) Attach(ctx context.Context, pid int) (agent.Target, error) {
	if mode, _ := b.Mode(); mode == modeUprobe {
		return b.startWorker(ctx, pid, nil, modeUprobe)
	}
	b.mu.Lock()
	prev := b.watchdogs[pid]
	b.mu.Unlock()
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			return nil, fmt.Errorf("attaching to pid %d: waiting for the watchdog of its last Delve worker: %w", pid, ctx.Err())
		}
	}
	journal, watched, err := startWatchdog(b.exe, pid, b.stderr)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.watchdogs[pid] = watched
	b.mu.Unlock()
	go func() {
		<-watched
		b.mu.Lock()
		if b.watchdogs[pid] == watched {
			delete(b.watchdogs, pid)
		}
		b.mu.Unlock()
	}()
	// Only the worker holds the journal: its end, dead or detached, is
	// what the watchdog waits for.
	defer journal.Close()
	return b.startWorker(ctx, pid, journal, modeInt3)
}

// startWorker starts a worker for pid in mode, handing it journal (int3
// mode), and waits until it is attached.
func (b *Backend) startWorker(ctx context.Context, pid int, journal *os.File, mode string) (agent.Target, error) {
	cmd := exec.Command(b.exe)
	// What ps shows: the role and the target. The environment, not these
	// arguments, tells the executable to run as a worker.
	cmd.Args = []string{"riptrace-delve-worker", "target=" + strconv.Itoa(pid), "mode=" + mode}
	cmd.Env = append(os.Environ(), workerEnv+"="+strconv.Itoa(pid), budgetEnv+"="+strconv.FormatFloat(b.budget, 'g', -1, 64), modeEnv+"="+mode)
	if journal != nil {
		cmd.Env = append(cmd.Env, journalEnv+"=1")
		cmd.ExtraFiles = []*os.File{journal}
	}
	cmd.Stderr = b.stderr
	// Its own process group: a Ctrl-C aimed at the agent must not reach
	// the worker first; the agent detaches its workers in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a Delve worker for pid %d: %w", pid, err)
	}
	w := &worker{
		pid:     pid,
		cmd:     cmd,
		stdin:   stdin,
		hits:    make(chan agent.Hit, 1024),
		pending: make(map[uint64]chan event),
		ended:   make(chan struct{}),
	}
	first := make(chan event, 1)
	go w.read(stdout, first)
	select {
	case ev := <-first:
		if ev.Type == "attached" {
			return w, nil
		}
		<-w.ended
		if ev.Error != nil {
			return nil, ev.Error
		}
		return nil, fmt.Errorf("the Delve worker for pid %d ended before attaching: %v", pid, w.endErr)
	case <-ctx.Done():
		stdin.Close() // the worker detaches if it got that far
		return nil, ctx.Err()
	}
}

// worker is the agent's side of one worker process.
type worker struct {
	pid   int
	cmd   *exec.Cmd
	hits  chan agent.Hit
	ended chan struct{} // closed when the worker's output ends

	// mu guards the fields below.
	mu      sync.Mutex
	stdin   io.WriteCloser
	seq     uint64
	pending map[uint64]chan event
	endErr  error // why the worker ended; set before ended is closed

	stopped atomic.Int64 // ns the target spent stopped, as the worker last said
}

// Stopped returns how long the target has spent stopped since attach, as
// of the worker's last report (at most a second old).
func (w *worker) Stopped() time.Duration { return time.Duration(w.stopped.Load()) }

// read dispatches the worker's events: the first to first, replies to their
// callers, hits to the hit channel.
func (w *worker) read(stdout io.Reader, first chan<- event) {
	defer close(w.hits)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	gotFirst := false
	var end error
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			end = fmt.Errorf("decoding the Delve worker's output: %w", err)
			break
		}
		if !gotFirst {
			gotFirst = true
			first <- ev
		}
		switch ev.Type {
		case "reply":
			w.mu.Lock()
			ch := w.pending[ev.Seq]
			delete(w.pending, ev.Seq)
			w.mu.Unlock()
			if ch != nil {
				ch <- ev
			}
		case "stats":
			w.stopped.Store(ev.Stopped)
		case "hit":
			w.stopped.Store(ev.Stopped)
			if ev.Hit != nil {
				w.hits <- agent.Hit{Hit: *ev.Hit, Fault: ev.Error, Throttle: ev.Throttle, DropsOnly: ev.DropsOnly, Uncounted: ev.Uncounted, Waiting: ev.Waiting, Rearm: ev.Rearm}
			}
		case "end":
			switch {
			case ev.Exited != nil:
				end = agent.ErrProcessExited{Pid: w.pid, Status: *ev.Exited}
			case ev.Error != nil:
				end = ev.Error
			}
		}
	}
	waitErr := w.cmd.Wait()
	if end == nil && waitErr != nil {
		end = fmt.Errorf("the Delve worker for pid %d failed: %v", w.pid, waitErr)
	}
	w.mu.Lock()
	w.endErr = end
	pending := w.pending
	w.pending = nil
	w.mu.Unlock()
	for _, ch := range pending {
		ch <- event{Type: "reply", Error: fleet.AsError(w.gone())}
	}
	close(w.ended)
	if !gotFirst {
		first <- event{Type: "end", Error: fleet.AsError(w.gone())}
	}
}

func (w *worker) gone() error {
	if w.endErr != nil {
		return w.endErr
	}
	return fmt.Errorf("the Delve worker for pid %d has ended", w.pid)
}

// call sends a request and waits for its reply.
func (w *worker) call(ctx context.Context, r request) (event, error) {
	ch := make(chan event, 1)
	w.mu.Lock()
	if w.pending == nil {
		w.mu.Unlock()
		return event{}, w.gone()
	}
	w.seq++
	r.Seq = w.seq
	w.pending[r.Seq] = ch
	b, _ := json.Marshal(&r)
	_, err := w.stdin.Write(append(b, '\n'))
	w.mu.Unlock()
	if err != nil {
		return event{}, fmt.Errorf("talking to the Delve worker for pid %d: %w", w.pid, err)
	}
	select {
	case ev := <-ch:
		if ev.Error != nil {
			return ev, ev.Error
		}
		return ev, nil
	case <-ctx.Done():
		return event{}, ctx.Err()
	}
}

func (w *worker) Hits() <-chan agent.Hit { return w.hits }

func (w *worker) Set(ctx context.Context, tp agent.Tracepoint) (agent.Placement, error) {
	ev, err := w.call(ctx, request{Op: "set", Spec: &tp})
	if err != nil {
		return agent.Placement{}, err
	}
	return *ev.Placement, nil
}

func (w *worker) Clear(ctx context.Context, id string) error {
	_, err := w.call(ctx, request{Op: "clear", ID: id})
	return err
}

// Detach asks the worker to detach and waits for it to end. If the process
// had exited, it returns agent.ErrProcessExited.
func (w *worker) Detach(ctx context.Context) error {
	_, err := w.call(ctx, request{Op: "detach"})
	select {
	case <-w.ended:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	w.stdin.Close()
	w.mu.Unlock()
	if _, ok := w.endErr.(agent.ErrProcessExited); ok {
		return w.endErr
	}
	if err != nil && !strings.Contains(err.Error(), "has ended") {
		return err
	}
	return nil
}
