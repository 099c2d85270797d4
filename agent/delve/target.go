package delve

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/riptrace/riptrace/agent/internal/dlvvalue"

	"github.com/go-delve/delve/pkg/logflags"
	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// attach attaches to pid in this process. The process is stopped only while
// Delve loads its binary info, then resumed by the target's loop.
//
// Delve waits for its tracees with wait4(-1), which would also reap the
// events of any other tracee of this process: one process traces one target.
// The agent gets there through Backend, which runs each attach in a worker.
func attach(ctx context.Context, pid int, budget float64, j *journal) (*target, error) {
	logflags.Setup(false, "", "")
	start := time.Now()
	type result struct {
		grp *proc.TargetGroup
		err error
	}
	ch := make(chan result, 1)
	go func() {
		grp, err := nativeAttach(pid)
		ch <- result{grp, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		// Attaching cannot be interrupted half way; detach once it is done.
		go func() {
			if r := <-ch; r.err == nil {
				r.grp.Detach(false)
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, attachError(pid, r.err)
	}
	t := &target{
		pid:    pid,
		grp:    r.grp,
		cmds:   make(chan command, 16),
		hits:   make(chan agent.Hit, 1024),
		byID:   make(map[string]*tracepoint),
		byLID:  make(map[int]*tracepoint),
		exited: make(chan struct{}),
	}
	t.journal = j
	// Delve's own breakpoints (on fatal panics and throws) are written
	// already: journal them now.
	for _, bp := range r.grp.Selected.Breakpoints().M {
		j.record(bp.Addr, bp.OriginalData)
	}
	t.budget.init(budget, time.Now())
	// Attaching stopped the process while Delve read its binary info: time
	// stopped, though not charged to the budget (it is paid once).
	t.budget.stopped.Add(int64(time.Since(start)))
	go t.loop()
	return t, nil
}

// nativeAttach attaches Delve to pid (delveAttach: every thread, those
// that end under it skipped), trying again while the process lives should
// a thread still fail it by ending at the wrong moment.
//
// Each failed try waits for the process to be let go: Delve detaches only
// the threads it counted, and a thread held a moment longer (until the
// thread that traced it exits) made a try in that moment fail with EPERM,
// reported as the process being traced by another debugger: the worker
// itself (a worker keeps its main thread from tracing: see its init).
func nativeAttach(pid int) (*proc.TargetGroup, error) {
	for try := 1; ; try++ {
		grp, err := delveAttach(pid)
		if err == nil {
			return grp, nil
		}
		if rerr := awaitRelease(pid); rerr != nil {
			return nil, fmt.Errorf("%w; and after it: %v", err, rerr)
		}
		if !threadEnded(err) || procGone(pid) {
			return nil, err
		}
		if try == attachTries {
			return nil, fmt.Errorf("its threads kept ending while Delve attached to them, in %d tries (the last: %v): try again, or trace it in uprobe mode, which does not meet this", attachTries, err)
		}
	}
}

// releaseWait bounds how long awaitRelease waits for a thread of this
// process to exit; it takes a scheduler's turn, even on a loaded machine.
const releaseWait = 10 * time.Second

// awaitRelease waits until no thread of pid is traced by a thread of this
// process (see nativeAttach).
func awaitRelease(pid int) error {
	deadline := time.Now().Add(releaseWait)
	for {
		held, by := heldByUs(pid)
		if held == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thread %d of pid %d stays traced by thread %d of this process (pid %d) after a failed attach", held, pid, by, os.Getpid())
		}
		time.Sleep(time.Millisecond)
	}
}

// heldByUs returns a thread of pid that a thread of this process traces,
// and that thread, or 0 if there is none.
func heldByUs(pid int) (held, by int) {
	for _, st := range threadStatuses(pid) {
		// TracerPid names the tracing thread, which is ours if it is
		// among our tasks; it is until it has let go of its tracees.
		if st.Tracer == 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", st.Tracer)); err == nil {
			return st.TID, st.Tracer
		}
	}
	return 0, 0
}

// attachTries bounds the attaches to a process whose threads keep ending
// under them. Before delveAttach skipped the threads that ended, a try
// failed if one ended between Delve's listing and its attach to it: with a
// thread started and ended every millisecond, on a loaded machine, a
// quarter of the tries failed, and 10 tries ran out in 1 of 400 attaches;
// at a thread every 100 µs, 30 tries once ran out in a CI run.
const attachTries = 30

// threadEnded reports whether err is Delve's for a thread that ended while
// it attached. The kernel refuses to attach to a thread that is exiting
// (EPERM), which Delve lets pass, taking it for a thread it traces already;
// its wait for that thread's stop then fails with ECHILD ("no child
// processes"): that thread was ending too.
func threadEnded(err error) bool {
	msg := err.Error()
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ECHILD) ||
		strings.Contains(msg, "no such process") || strings.Contains(msg, "no child processes") ||
		strings.Contains(msg, "thread already exited")
}

func attachError(pid int, err error) error {
	msg := err.Error()
	switch {
	case (errors.Is(err, syscall.ESRCH) || strings.Contains(msg, "no such process")) && procGone(pid):
		// ESRCH may be for a thread that ended, the process running on.
		return fleet.Errorf(fleet.CodeNoProcess, "attaching to pid %d: the process is gone", pid)
	case errors.Is(err, syscall.EPERM) || strings.Contains(msg, "operation not permitted"):
		if tracer := tracerOf(pid); tracer != "" {
			return fleet.Errorf(fleet.CodeAttach, "attaching to pid %d: it is already traced by %s; a process has one tracer at a time: detach that debugger (or stop the other agent managing it)", pid, tracer)
		}
		hint := "run the agent as root, or give it CAP_SYS_PTRACE (in Kubernetes: securityContext.capabilities.add: [SYS_PTRACE])"
		if scope, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil && strings.TrimSpace(string(scope)) > "1" {
			hint += fmt.Sprintf(", and lower /proc/sys/kernel/yama/ptrace_scope (it is %s) to 1: echo 1 | sudo tee /proc/sys/kernel/yama/ptrace_scope", strings.TrimSpace(string(scope)))
		}
		return fleet.Errorf(fleet.CodeAttach, "attaching to pid %d: %v: %s", pid, err, hint)
	}
	return fleet.Errorf(fleet.CodeAttach, "attaching to pid %d: %v", pid, err)
}

// command is work for the loop, run while the process is stopped.
type command struct {
	fn   func() error
	done chan error
}

type target struct {
	faults  []agent.Hit         // removal notices not yet taken by the agent (loop only)
	ranLast bool                // the last Continue resumed the process (loop only)
	pieces  dlvvalue.PieceCache // what is left out of values in pieces, by PC (loop only)
	pid     int
	cmds    chan command
	hits    chan agent.Hit

	// stopMu guards the fields below. A manual stop is a SIGTRAP sent to
	// the process: one that reaches it after ptrace let go of it kills it,
	// so stops are requested only while Continue runs, once per Continue,
	// and never after detaching.
	stopMu   sync.Mutex
	detached bool
	resumed  chan struct{} // closed once the current Continue resumed the process; nil between Continues
	gen      uint64        // counts Continues
	stopGen  uint64        // the Continue a stop was requested in
	stopAt   time.Time     // when that stop was requested

	exited  chan struct{} // closed when the loop ends
	exitErr error         // set before exited is closed

	// Owned by the loop goroutine.
	grp     *proc.TargetGroup
	byID    map[string]*tracepoint
	byLID   map[int]*tracepoint
	nextID  int
	journal *journal // of the original bytes under breakpoints, for the watchdog
	budget  stopBudget
	guarded []guardedThread // threads whose SIGTRAP is blocked while stopped (guardTraps)
	// window is the stopped time of the current second: in all, and in
	// stops that captured nothing (bare traps and dropped hits).
	window struct {
		start         time.Time
		stopped, bare time.Duration
	}
	overBudget float64 // the bare share of the last window, if over the budget
}

// tracepoint is one installed spec. Owned by the loop goroutine.
type tracepoint struct {
	spec    agent.Tracepoint
	lbp     *proc.LogicalBreakpoint
	load    proc.LoadConfig
	log     []fleet.LogSegment
	dropped uint64
	// budgetDropped counts, of dropped, the hits the stop budget dropped;
	// recent counts hits (dropped or not) since the budget's last check.
	budgetDropped uint64
	recent        uint64
	droppedInAll  uint64 // dropped hits already sent with hits, for the removal message
	warm          bool   // load Delve's module data before reading values (see warmModuleData)

	// disarm is the rate limit (agent.Disarm.Take: so many hits a window)
	// and takes the breakpoint out once the window's allowance is spent;
	// rearm puts it back for the next window (see refused): the hits the
	// limit would refuse then stop nothing. seen counts the
	// hits the limit met while the breakpoint was in, wasted those it
	// refused after the allowance was spent; uncounted is the estimate of
	// the hits run while it was out, for the next hit to carry.
	disarm       agent.Disarm
	rearm        *time.Timer
	seen, wasted uint64
	uncounted    agent.Uncounted
	hitOp        token.Token // the hit condition's, 0 for none
	hitVal       int
	// condUndecided are the PCs where place could not tell whether the
	// condition reads a part of a value left out: their first stop does.
	condUndecided map[uint64]bool
	// cond is the condition while collect evaluates it, with the hit
	// condition, rather than Delve (see condHolds); nil once Delve does.
	cond ast.Expr
}

func (t *target) Hits() <-chan agent.Hit { return t.hits }

// do queues fn for the loop and, once the process runs, asks Delve to stop
// it so that the loop takes the command.
func (t *target) do(ctx context.Context, fn func() error) error {
	c := command{fn: fn, done: make(chan error, 1)}
	select {
	case t.cmds <- c:
	case <-t.exited:
		return t.gone()
	case <-ctx.Done():
		return ctx.Err()
	}
	// The loop may be between Continues (it then runs the command without
	// help) or in a Continue that has not resumed the process yet: check
	// again now and then.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// Done already: stopping the next Continue would be for nothing.
		select {
		case err := <-c.done:
			return err
		default:
		}
		var resumed <-chan struct{}
		t.stopMu.Lock()
		if t.stopGen != t.gen {
			resumed = t.resumed // nil between Continues: wait for the tick
		}
		gen := t.gen
		t.stopMu.Unlock()
		select {
		case <-resumed:
			t.requestStop(gen)
		case err := <-c.done:
			return err
		case <-t.exited:
			select {
			case err := <-c.done:
				return err
			default:
				return t.gone()
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (t *target) gone() error {
	if t.exitErr != nil {
		return t.exitErr
	}
	return fmt.Errorf("pid %d is detached", t.pid)
}

// requestStop asks Delve to stop the process, if Continue number gen is
// still running and has not been asked yet.
func (t *target) requestStop(gen uint64) {
	t.stopMu.Lock()
	defer t.stopMu.Unlock()
	if t.detached || gen != t.gen || t.resumed == nil || t.stopGen == gen {
		return
	}
	t.stopGen = gen
	t.stopAt = time.Now()
	t.grp.RequestManualStop()
}

// continueProcess runs Delve's Continue, waking Delve's wait for a thread
// stop should a thread's end leave it waiting for nothing (see unstick).
func (t *target) continueProcess() error {
	if threads := t.grp.Selected.ThreadList(); len(threads) > 0 {
		if dbp := nativeProcessOf(threads[0]); dbp != nil {
			done := make(chan struct{})
			defer close(done)
			go t.unstick(dbp, done)
		}
	}
	return t.grp.Continue()
}

// cont resumes the process until a tracepoint hits or a stop is requested.
// It returns how long Continue ran, how long of that the process was still
// stopped (Delve stepping threads over breakpoints before resuming it) and,
// if a manual stop ended it, how long Delve took to stop the process from
// the request.
func (t *target) cont() (cycle, resuming, manual time.Duration, err error) {
	resumed := make(chan struct{})
	t.stopMu.Lock()
	t.gen++
	t.resumed = resumed
	t.stopMu.Unlock()
	t.grp.ResumeNotify(resumed)
	start := time.Now()
	var resumedAt atomic.Int64
	returned := make(chan struct{})
	go func() {
		// A Continue that returns without resuming never closes resumed.
		select {
		case <-resumed:
			resumedAt.Store(time.Now().UnixNano())
		case <-returned:
		}
	}()
	err = t.continueProcess()
	close(returned)
	end := time.Now()
	select {
	case <-resumed:
		t.ranLast = true
	default:
		t.ranLast = false
	}
	if r := resumedAt.Load(); r != 0 {
		resuming = time.Unix(0, r).Sub(start)
	}
	t.stopMu.Lock()
	t.resumed = nil
	if t.stopGen == t.gen {
		manual = end.Sub(t.stopAt)
	}
	t.stopMu.Unlock()
	return end.Sub(start), resuming, manual, err
}

func (t *target) Set(ctx context.Context, spec agent.Tracepoint) (agent.Placement, error) {
	var pl agent.Placement
	err := t.do(ctx, func() error {
		var err error
		pl, err = t.set(spec)
		return err
	})
	return pl, err
}

func (t *target) Clear(ctx context.Context, id string) error {
	return t.do(ctx, func() error { return t.clear(id) })
}

func (t *target) Detach(ctx context.Context) error {
	err := t.do(ctx, t.detach)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err != nil {
		// The detach failed and the loop runs on: do not wait for an end
		// that may never come.
		select {
		case <-t.exited:
		default:
			return err
		}
	}
	<-t.exited
	return t.exitErr
}

// loop owns the TargetGroup: it runs queued commands, resumes the process,
// and turns breakpoint stops into hits, until the process exits or is
// detached.
func (t *target) loop() {
	defer close(t.hits)
	defer close(t.exited)
	defer func() {
		// A panic in Delve must not end the worker with breakpoints still
		// in the target: that would kill it at its next hit.
		if r := recover(); r != nil {
			t.exitErr = fmt.Errorf("internal error in the Delve backend on pid %d, detached: %v", t.pid, r)
			t.safely(t.detach)
			t.markDetached()
		}
	}()
	failures := 0
	var stopped time.Time // when the last Continue returned; zero at first
	// bare: that stop was a tracepoint's trap that captured nothing (hits
	// dropped by a limit or the budget) and left its breakpoint in, to
	// trap again; a stop for commands, or for anything else, is not. A
	// stop that took the breakpoint out until the next window is the
	// price of disarming, once a window however hot the line: it counts
	// against the budget, but says nothing of the line's traps alone (a
	// stressed run removed a tracepoint for the 51 ms Delve took to resume
	// after the one trap of its window).
	bare := false
	for {
		t.sendFaults()
		began := time.Now()
		if t.runCommands() {
			return
		}
		if !stopped.IsZero() {
			// Commands stop the process too, but are no line's traps:
			// they count against the budget, never as bare traps.
			now := time.Now()
			commands := now.Sub(began)
			t.charge(began.Sub(stopped), now, bare)
			t.charge(commands, now, false)
		}
		t.unguardTraps()
		cycle, resuming, manual, err := t.cont()
		stopped = time.Now()
		if resuming > 0 {
			t.charge(resuming, stopped, bare)
			cycle -= resuming
		}
		if manual > 0 {
			// Charged as a trap is, no more: most of a slow manual
			// stop is the process running until it takes the signal.
			t.budget.timedStop(manual, true)
			t.charge(t.budget.trapCharge(manual), stopped, false)
		}
		var pe proc.ErrProcessExited
		if errors.As(err, &pe) {
			t.exitErr = agent.ErrProcessExited{Pid: pe.Pid, Status: pe.Status}
			t.markDetached()
			t.journal.detached()
			return
		}
		if ok, verr := t.grp.Valid(); !ok {
			t.exitErr = agent.ErrProcessExited{Pid: t.pid}
			if verr != nil && !errors.As(verr, &pe) {
				t.exitErr = fmt.Errorf("pid %d is no longer traceable: %w", t.pid, verr)
			}
			t.markDetached()
			return
		}
		if manual > 0 {
			// The stop request may have met a breakpoint stop instead.
			t.takePendingTrap()
		}
		// A condition that cannot be evaluated makes Continue return an
		// error with the process stopped; collect reports it per tracepoint.
		t.guardTraps()
		n, captured, out := t.collect()
		bare = n > 0 && captured == 0 && out == 0
		if n > 0 {
			if manual == 0 {
				t.budget.timedStop(cycle, false)
			}
			t.charge(t.budget.trapCharge(cycle), stopped, bare)
			t.enforceBudget()
		}
		if n == 0 && (err != nil || !t.ranLast) {
			// Nothing hit, and Continue failed or never resumed the
			// process: a process that exited without Delve seeing it
			// (a zombie), or one Delve cannot run. Never spin on it.
			if procGone(t.pid) {
				t.exitErr = agent.ErrProcessExited{Pid: t.pid}
				t.markDetached()
				t.journal.detached()
				return
			}
			failures++
			if failures > 100 {
				if err == nil {
					err = errors.New("the process was not resumed")
				}
				t.exitErr = fmt.Errorf("detached from pid %d after repeated errors resuming it: %w", t.pid, err)
				if derr := t.detach(); derr != nil {
					t.exitErr = fmt.Errorf("gave up on pid %d after repeated errors resuming it (%w), and detaching failed too: %v", t.pid, err, derr)
				}
				t.markDetached()
				return
			}
			continue
		}
		failures = 0
	}
}

// runCommands runs every queued command; it reports whether the target is
// now detached.
func (t *target) runCommands() bool {
	for {
		select {
		case c := <-t.cmds:
			c.done <- t.safely(c.fn)
			t.stopMu.Lock()
			d := t.detached
			t.stopMu.Unlock()
			if d {
				return true
			}
		default:
			return false
		}
	}
}

// safely runs fn, turning a panic in Delve into an error rather than an
// agent crash that would leave breakpoints in the target.
func (t *target) safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fleet.Errorf(fleet.CodeInternal, "internal error in the Delve backend on pid %d: %v", t.pid, r)
		}
	}()
	return fn()
}

func (t *target) markDetached() {
	t.stopMu.Lock()
	t.detached = true
	t.stopMu.Unlock()
	// Fail commands queued after the loop's last look.
	for {
		select {
		case c := <-t.cmds:
			c.done <- t.exitErr
		default:
			return
		}
	}
}

// detach removes every breakpoint and lets the process go.
func (t *target) detach() error {
	t.stopMu.Lock()
	done := t.detached
	t.stopMu.Unlock()
	if done {
		return nil
	}
	t.unguardTraps()
	for id := range t.byID {
		if err := t.clear(id); err != nil {
			return err
		}
	}
	if err := t.drainTraps(); err != nil {
		return err
	}
	t.stopMu.Lock()
	defer t.stopMu.Unlock()
	t.detached = true
	// Detach also clears Delve's own breakpoints, restoring the original
	// bytes, before ptrace lets go.
	if err := t.grp.Detach(false); err != nil {
		return fmt.Errorf("detaching from pid %d: %w", t.pid, err)
	}
	t.journal.detached()
	return nil
}

// drainTraps makes the process take, while still traced, a SIGTRAP left
// pending by a stop request that met a breakpoint stop: after detaching, the
// Go runtime would die of it ("SIGTRAP: trace trap"). Delve swallows a
// SIGTRAP it sees, so the process is resumed until none is pending. Our
// breakpoints are gone by then; the stop that ends each round is a manual
// stop requested a moment after the process resumed, when the pending trap
// has been taken.
func (t *target) drainTraps() error {
	for round := 0; trapPending(t.pid); round++ {
		if round == 50 {
			return fmt.Errorf("detaching from pid %d: a SIGTRAP stays pending in it after %d rounds; staying attached rather than letting it kill the process", t.pid, round)
		}
		resumed := make(chan struct{})
		requested := make(chan struct{})
		t.grp.ResumeNotify(resumed)
		go func() {
			defer close(requested)
			<-resumed
			time.Sleep(time.Millisecond)
			t.grp.RequestManualStop()
		}()
		err := t.continueProcess()
		var pe proc.ErrProcessExited
		if errors.As(err, &pe) {
			return nil
		}
		select {
		case <-requested:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("detaching from pid %d: the process did not resume to take a pending SIGTRAP", t.pid)
		}
	}
	return nil
}

// set installs spec. A spec that replaces an installed one of the same ID
// and fails leaves that one installed, as the eBPF backend does; Delve
// refuses two breakpoints at one address, so the old one goes first and is
// put back.
func (t *target) set(spec agent.Tracepoint) (agent.Placement, error) {
	old := t.byID[spec.ID]
	if old != nil {
		if err := t.clear(spec.ID); err != nil {
			return agent.Placement{}, err
		}
	}
	pl, err := t.place(spec)
	if err != nil && old != nil {
		// The same logical breakpoint: its hit counts, which hit
		// conditions read, go on where they were.
		t.grp.LogicalBreakpoints[old.lbp.LogicalID] = old.lbp
		old.disarm.Armed(time.Now()) // in again, whether it was out or not
		if rerr := t.grp.SetBreakpointEnabled(old.lbp, true); rerr != nil {
			delete(t.grp.LogicalBreakpoints, old.lbp.LogicalID)
			return pl, fmt.Errorf("%w; and the tracepoint it replaced could not be put back: %v", err, rerr)
		}
		t.byID[spec.ID] = old
		t.byLID[old.lbp.LogicalID] = old
	}
	return pl, err
}

// place installs spec, whose ID is not installed.
func (t *target) place(spec agent.Tracepoint) (agent.Placement, error) {
	tgt := t.grp.Selected
	file, err := agent.ResolveFile(tgt.BinInfo().Sources, spec.Location)
	if err != nil {
		return agent.Placement{}, err
	}
	logSegs, err := fleet.ParseLogMessage(spec.LogMessage)
	if err != nil {
		return agent.Placement{}, err
	}
	t.nextID++
	lbp := &proc.LogicalBreakpoint{
		LogicalID: t.nextID,
		File:      file,
		Line:      spec.Location.Line,
		HitCount:  make(map[int64]uint64),
		Set:       proc.SetBreakpoint{File: file, Line: spec.Location.Line},
	}
	if err := t.grp.ChangeBreakpointCondition(lbp, spec.Condition, spec.HitCondition, false); err != nil {
		return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: %v", spec.ID, err)
	}
	// Delve would decide a condition that reads a part of a value left
	// out at a PC on the zero it reads there: refused now, or where DWARF
	// alone cannot tell, at the first stop there (see condHolds).
	var undecided map[uint64]bool
	if pcs, err := proc.FindFileLocation(tgt, file, spec.Location.Line); err == nil {
		undecided, err = dlvvalue.DroppedInCondition(tgt.BinInfo(), pcs, spec.Condition)
		if err != nil {
			return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: %v", spec.ID, err)
		}
	}
	var cond ast.Expr
	if len(undecided) > 0 {
		cond, _ = parser.ParseExpr(spec.Condition) // Delve parsed it above
		if err := t.grp.ChangeBreakpointCondition(lbp, "", "", false); err != nil {
			return agent.Placement{}, fleet.Errorf(fleet.CodeInternal, "tracepoint %s: %v", spec.ID, err)
		}
	}
	if err := t.journalLine(file, spec.Location.Line); err != nil {
		return agent.Placement{}, fleet.Errorf(fleet.CodeInternal, "tracepoint %s: %v", spec.ID, err)
	}
	t.grp.LogicalBreakpoints[lbp.LogicalID] = lbp
	if err := t.grp.SetBreakpointEnabled(lbp, true); err != nil {
		delete(t.grp.LogicalBreakpoints, lbp.LogicalID)
		var nf *proc.ErrCouldNotFindLine
		if errors.As(err, &nf) {
			return agent.Placement{}, fleet.Errorf(fleet.CodeNoCode, "%s:%d has no code in %s: the compiler emitted no instructions for that line (a comment, a blank line, a declaration, or code optimized away); pick a line with a statement", file, spec.Location.Line, exeName(t.pid))
		}
		return agent.Placement{}, fleet.Errorf(fleet.CodeInternal, "setting a breakpoint at %s:%d: %v", file, spec.Location.Line, err)
	}
	tp := &tracepoint{spec: spec, lbp: lbp, load: dlvvalue.LoadConfig(spec.Capture), log: logSegs}
	tp.disarm.NoEstimate = true // its stops say too little: see agent.Disarm
	tp.condUndecided, tp.cond = undecided, cond
	// Delve accepted it above.
	tp.hitOp, tp.hitVal, _ = parseHitCondition(spec.HitCondition)
	tp.disarm.Armed(time.Now())
	t.byID[spec.ID] = tp
	t.byLID[lbp.LogicalID] = tp

	pl := agent.Placement{Pid: t.pid, File: file, Line: spec.Location.Line}
	for _, bp := range tgt.Breakpoints().M {
		if bp.LogicalID() == lbp.LogicalID {
			pl.PCs = append(pl.PCs, bp.Addr)
			// Already journaled unless Delve chose a PC off the line's.
			t.journal.record(bp.Addr, bp.OriginalData)
		}
	}
	if len(pl.PCs) > 0 {
		if fn := tgt.BinInfo().PCToFunc(pl.PCs[0]); fn != nil {
			pl.Function = fn.Name
		}
	}
	return pl, nil
}

// tracerOf names the process tracing pid, or returns "" if none does.
func tracerOf(pid int) string {
	tp := TracerPid(pid)
	if tp == 0 {
		return ""
	}
	return fmt.Sprintf("pid %d (%s)", tp, exeName(tp))
}

// exeName names pid's executable for messages.
func exeName(pid int) string {
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		return exe
	}
	return fmt.Sprintf("pid %d", pid)
}

func (t *target) clear(id string) error {
	tp := t.byID[id]
	if tp == nil {
		return nil
	}
	delete(t.byID, id)
	delete(t.byLID, tp.lbp.LogicalID)
	if tp.rearm != nil {
		tp.rearm.Stop()
	}
	err := t.grp.SetBreakpointEnabled(tp.lbp, false) // a no-op if it is out
	delete(t.grp.LogicalBreakpoints, tp.lbp.LogicalID)
	if err != nil {
		return fmt.Errorf("clearing tracepoint %s from pid %d: %w", id, t.pid, err)
	}
	return nil
}

// collect turns every thread stopped at one of our breakpoints into a hit; it
// returns how many threads it looked at, how many hits it captured, and
// how many breakpoints it took out until their next window.
func (t *target) collect() (n, captured, out int) {
	now := time.Now()
	// The tracepoints whose condition Delve evaluates from the next stop
	// on: not in this one, where it met the other threads without it.
	var handOver []*tracepoint
	defer func() {
		for _, tp := range handOver {
			if t.byID[tp.spec.ID] == tp {
				t.handOver(tp)
			}
		}
	}()
	for _, th := range t.grp.Selected.ThreadList() {
		st := th.Breakpoint()
		if st.Breakpoint == nil || st.Breakpoint.Logical == nil {
			continue
		}
		tp := t.byLID[st.Breakpoint.Logical.LogicalID]
		if tp == nil {
			continue
		}
		n++
		if st.CondError != nil {
			t.fault(tp, condFailed(tp, st.CondError))
			continue
		}
		if !st.Active {
			continue
		}
		tp.recent++
		if tp.cond != nil {
			holds, err := t.condHolds(th, tp, st.Breakpoint.Addr)
			if err != nil {
				t.fault(tp, err)
				continue
			}
			if tp.decided() && !slices.Contains(handOver, tp) {
				handOver = append(handOver, tp)
			}
			if !holds {
				continue
			}
		}
		tp.seen++
		if !tp.disarm.Take(now, tp.spec.Limits.MaxHitsPerSecond) {
			if t.refused(tp, now) {
				out++
			}
			continue
		}
		if !t.budget.allow(now) {
			// Before any capture: reading values is most of a stop. The
			// breakpoint comes out until the next window, as when the
			// allowance is spent: each trap meanwhile would be a stop too,
			// spending what the budget must win back to reopen.
			tp.budgetDropped++
			if t.refused(tp, now) {
				out++
			}
			continue
		}
		captured++
		h, err := t.safeCapture(th, tp)
		if err != nil {
			t.fault(tp, fleet.AsError(err))
			continue
		}
		h.Dropped, tp.dropped = tp.dropped, 0
		tp.droppedInAll += h.Dropped
		hit := agent.Hit{Hit: h, Uncounted: tp.uncounted, Waiting: tp.disarm.Waiting(), Rearm: tp.disarm.BackedOff(tp.spec.Limits.MaxHitsPerSecond)}
		budgetDropped := tp.budgetDropped
		if budgetDropped > 0 {
			hit.Throttle = fmt.Sprintf("by the stop budget: pid %d may be stopped at most %s of each second (the agent's --stop-budget)", t.pid, t.budget.percent())
			tp.budgetDropped = 0
		}
		select {
		case t.hits <- hit:
			tp.uncounted = agent.Uncounted{}
		default:
			// The agent fell behind: never keep the process stopped for it.
			tp.dropped += h.Dropped + 1
			tp.droppedInAll -= h.Dropped
			tp.budgetDropped += budgetDropped
		}
	}
	return n, captured, out
}

// While a PC of a tracepoint is left to its first stop to tell whether the
// condition reads a part left out there (an inlined call's, see
// dlvvalue.DroppedInCondition), Delve must not evaluate the condition: it
// would decide it on the zero it reads for that part, and a hit it rejects
// so never comes back from Continue to be checked. Delve then stops at
// every hit, with neither condition nor hit condition, and collect decides
// them as Delve does in its stop (condHolds), counting the hits that met
// the condition in the logical breakpoint as Delve counts them. Once every
// such PC has stopped once, or the hit condition can hold no more, Delve
// takes both back (handOver), its counts where collect left them.

// condHolds decides the condition and hit condition of tp for the stop of
// th at pc, as Delve's checkCond does; at a PC left undecided, it first
// refuses a condition that reads a part left out there. Loop only.
func (t *target) condHolds(th proc.Thread, tp *tracepoint, pc uint64) (holds bool, ferr *fleet.Error) {
	defer func() {
		if r := recover(); r != nil {
			holds, ferr = false, fleet.Errorf(fleet.CodeInternal, "internal error evaluating the condition of tracepoint %s on pid %d: %v; the tracepoint was removed (please report it)", tp.spec.ID, t.pid, r)
		}
	}()
	if tp.condUndecided[pc] {
		delete(tp.condUndecided, pc)
		if scope, err := proc.GoroutineScope(t.grp.Selected, th); err == nil {
			if err := dlvvalue.CondDroppedInScope(scope, tp.spec.Condition); err != nil {
				return false, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s was removed: %v", tp.spec.ID, err)
			}
		}
	}
	holds, err := evalBreakpointCondition(t.grp.Selected, th, tp.cond)
	if err != nil {
		return false, condFailed(tp, err)
	}
	if !holds {
		return false, nil
	}
	if g, err := proc.GetG(th); err == nil && g != nil {
		tp.lbp.HitCount[g.ID]++
	}
	tp.lbp.TotalHitCount++
	return hitHolds(tp.hitOp, int(tp.lbp.TotalHitCount), tp.hitVal), nil
}

// decided reports whether Delve may take tp's condition back: no PC is
// left whose first stop must tell whether it reads a part left out, or the
// hit condition can hold no more.
func (tp *tracepoint) decided() bool {
	return len(tp.condUndecided) == 0 || hitDone(tp.hitOp, int(tp.lbp.TotalHitCount), tp.hitVal)
}

// handOver gives tp's condition and hit condition to Delve, which
// evaluates them in its stops from now on (and takes the breakpoint out
// if the hit condition can hold no more). Loop only.
func (t *target) handOver(tp *tracepoint) {
	if err := t.grp.ChangeBreakpointCondition(tp.lbp, tp.spec.Condition, tp.spec.HitCondition, false); err != nil {
		t.fault(tp, fleet.Errorf(fleet.CodeInternal, "handing the condition of tracepoint %s at %s:%d to Delve: %v; the tracepoint was removed: set it again", tp.spec.ID, tp.lbp.File, tp.lbp.Line, err))
		return
	}
	tp.cond = nil
}

// condFailed is the error of a condition of tp that could not be
// evaluated.
func condFailed(tp *tracepoint, err error) *fleet.Error {
	return fleet.Errorf(fleet.CodeBadCondition, "condition %q of tracepoint %s failed at %s:%d: %v; the tracepoint was removed: fix the condition and set it again", tp.spec.Condition, tp.spec.ID, tp.lbp.File, tp.lbp.Line, err)
}

// refused counts a hit the rate limit refused at now and, when it is the
// first since the breakpoint went in, takes the breakpoint out until the
// next window: the hits the limit would refuse then stop nothing. A hit
// condition that needs every hit counted keeps it in (see countsEveryHit).
// It reports whether the breakpoint is out now. Loop only.
func (t *target) refused(tp *tracepoint, now time.Time) (out bool) {
	tp.dropped++
	if tp.spec.Limits.MaxHitsPerSecond <= 0 || countsEveryHit(tp.hitOp, int(tp.lbp.TotalHitCount), tp.hitVal) {
		return false
	}
	if !tp.disarm.Spend(now) {
		tp.wasted++ // another thread stopped at it in the same stop
		return tp.disarm.IsOut()
	}
	if err := t.grp.SetBreakpointEnabled(tp.lbp, false); err != nil {
		t.fault(tp, fleet.Errorf(fleet.CodeInternal, "taking out the breakpoint of tracepoint %s at %s:%d once its allowance was spent: %v; the tracepoint was removed: set it again", tp.spec.ID, tp.lbp.File, tp.lbp.Line, err))
		return true // removed: it traps no more
	}
	back := tp.disarm.Out(time.Now())
	// The loop puts it back in a stop of its own, asked for like any
	// command's; the process runs until then.
	tp.rearm = time.AfterFunc(time.Until(back), func() {
		t.do(context.Background(), func() error {
			t.putBack(tp)
			return nil
		})
	})
	return true
}

// putBack puts tp's breakpoint in again for a new window, with the estimate
// of the hits that ran while it was out for its next hit to carry. Loop
// only.
func (t *target) putBack(tp *tracepoint) {
	if t.byID[tp.spec.ID] != tp || !tp.disarm.IsOut() {
		return // cleared or replaced meanwhile
	}
	seen, wasted := tp.seen, tp.wasted
	tp.seen, tp.wasted = 0, 0
	tp.uncounted.Add(tp.disarm.Rearm(time.Now(), seen, wasted))
	if err := t.grp.SetBreakpointEnabled(tp.lbp, true); err != nil {
		t.fault(tp, fleet.Errorf(fleet.CodeInternal, "putting back the breakpoint of tracepoint %s at %s:%d for its next window: %v; the tracepoint was removed: set it again", tp.spec.ID, tp.lbp.File, tp.lbp.Line, err))
	}
}

// safeCapture captures a hit, turning a panic while reading the target into
// an error: the tracepoint is then removed, the process runs on.
func (t *target) safeCapture(th proc.Thread, tp *tracepoint) (h fleet.Hit, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fleet.Errorf(fleet.CodeInternal, "internal error capturing tracepoint %s on pid %d: %v; the tracepoint was removed (please report it)", tp.spec.ID, t.pid, r)
		}
	}()
	return t.capture(th, tp), nil
}

func (t *target) fault(tp *tracepoint, e *fleet.Error) {
	_ = t.clear(tp.spec.ID)
	// The hits dropped since the last one sent are counted with the
	// removal, or they would be lost from the tracepoint's tally.
	t.faults = append(t.faults, agent.Hit{Hit: fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid, Dropped: tp.dropped}, Fault: e})
	tp.dropped = 0
	t.sendFaults()
}

// sendFaults passes on the notices of removed tracepoints the agent could
// not take yet; the loop tries again before each resume, so a removal is
// never left unreported and the process never waits for the agent.
func (t *target) sendFaults() {
	for len(t.faults) > 0 {
		select {
		case t.hits <- t.faults[0]:
			t.faults = t.faults[1:]
		default:
			return
		}
	}
}

// charge counts a stop of d against the budget and in the window; bare
// says that the stop captured nothing.
func (t *target) charge(d time.Duration, now time.Time, bare bool) {
	t.budget.spend(d, now)
	if elapsed := now.Sub(t.window.start); elapsed >= time.Second {
		if share := t.window.bare.Seconds() / elapsed.Seconds(); t.budget.fraction > 0 && share > t.budget.fraction && !t.window.start.IsZero() {
			t.overBudget = share
		}
		t.window.start, t.window.stopped, t.window.bare = now, 0, 0
	}
	t.window.stopped += d
	if bare {
		t.window.bare += d
	}
}

// enforceBudget removes the hottest tracepoint when dropping captures did
// not keep the process within its stop budget for a second: its traps alone
// cost more.
func (t *target) enforceBudget() {
	share := t.overBudget
	if share == 0 {
		return
	}
	t.overBudget = 0
	var hot *tracepoint
	for _, tp := range t.byID {
		if hot == nil || tp.recent > hot.recent {
			hot = tp
		}
	}
	for _, tp := range t.byID {
		tp.recent = 0
	}
	if hot == nil {
		return
	}
	// A condition would not help: Delve evaluates it in the stop, so the
	// trap costs as much. Only a colder line, probes that do not stop the
	// process, or a larger budget do.
	t.fault(hot, fleet.Errorf(codeStopBudget, "tracepoint %s was removed from pid %d after %d hits were dropped: its line is so hot that its traps alone kept the process stopped %.0f%% of the last second, over the stop budget of %s (the agent's --stop-budget). Trace a colder line, use --backend ebpf (its probes do not stop the process), or raise the budget", hot.spec.ID, t.pid, hot.droppedInAll+hot.dropped, share*100, t.budget.percent()))
}

// Stopped returns how long the process has been stopped since attach.
func (t *target) Stopped() time.Duration { return t.budget.Stopped() }

// journalLine journals the original bytes at every PC of file:line before
// Delve writes breakpoints there (a superset of the PCs it picks), so that a
// watchdog can restore them if this worker dies.
func (t *target) journalLine(file string, line int) error {
	tgt := t.grp.Selected
	for _, pcs := range tgt.BinInfo().AllPCsForFileLines(file, []int{line}) {
		for _, pc := range pcs {
			buf := make([]byte, len(tgt.BinInfo().Arch.BreakpointInstruction()))
			if _, err := tgt.Memory().ReadMemory(buf, pc); err != nil {
				return fmt.Errorf("reading the text at %#x: %w", pc, err)
			}
			if err := t.journal.record(pc, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// procGone reports whether pid has exited: a zombie, or no longer in /proc.
func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}
