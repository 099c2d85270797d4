package delve

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
	"github.com/riptrace/riptrace/agent/internal/snapshot"
	"github.com/riptrace/riptrace/agent/internal/uprobes"

	"github.com/cilium/ebpf/link"
	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/amd64util"
	"github.com/go-delve/delve/pkg/proc/linutil"
	"github.com/go-delve/delve/pkg/proc/native/cpuid"
	"github.com/go-delve/delve/service/api"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// holdTarget is a process traced with uprobes and PTRACE_SEIZE (see
// uprobe_linux.go and the package doc): a hit stops only the thread that
// hit, for as long as its capture takes.
//
// Its goroutine, loop, owns the ptrace side on one locked OS thread: it
// seizes every thread, then waits for their stops, captures hits and
// resumes them, until the process exits. Set, Clear and Detach attach and
// close uprobes from any goroutine: they need no ptrace request.
type holdTarget struct {
	pid    int
	pieces dlvvalue.PieceCache // what is left out of values in pieces, by PC
	probes *probeSet
	hits   chan agent.Hit
	ready  chan error    // the seize's outcome
	exited chan struct{} // closed when loop ends

	// mu guards the fields below, and the snapshot and Delve target the
	// loop captures with.
	mu        sync.Mutex
	snap      *snapshot.Process
	tgt       *proc.Target
	tps       map[string]*holdTracepoint
	byCookie  map[uint64]*holdProbe
	cookieGen uint32
	nextSlot  uint32
	freeSlots []uint32
	detached  bool
	hitsDone  bool  // hits is closed
	exitErr   error // set before exited is closed
	faults    []agent.Hit
	budget    stopBudget
	gateShut  bool // the probes drop hits: the budget is spent
	gateTimer *time.Timer
	mono      uprobes.MonoClock
}

type holdTracepoint struct {
	spec     agent.Tracepoint
	file     string
	probes   []*holdProbe
	log      []fleet.LogSegment
	load     proc.LoadConfig
	cond     ast.Expr
	hitOp    token.Token // the hit condition's; 0: none
	hitVal   int
	hitCount uint64 // hits whose condition held
	limit    agent.TokenBucket
	dropped  uint64
	// budgetDropped counts, of dropped, the hits the stop budget dropped.
	budgetDropped uint64
	warm          bool
	// condUndecided are the PCs where Set could not tell whether the
	// condition reads a part of a value left out: their first hit does.
	condUndecided map[uint64]bool

	// disarm takes the probes out once the rate limit's allowance is
	// spent, and rearm puts them back (see refused), then asks whether
	// the line went quiet (settleQuiet). wasted counts the hits the limit
	// refused since the allowance was spent; uncounted is the estimate of
	// the hits run while the probes were out, for the next hit to report,
	// or a notice once the line is quiet.
	disarm       agent.Disarm
	rearm        *time.Timer
	seen, wasted uint64 // seen: the hits the limit met while the probes were in
	uncounted    agent.Uncounted
	// arming counts the times the probes went in or out, so that a
	// put-back that attached without the lock sees if they were taken
	// out meanwhile.
	arming uint64
	// budgetOut says the probes came out for the stop budget (see
	// takeOutForBudget) since the last hit sent: its estimate is the
	// budget's drops.
	budgetOut bool
	// puttingBack says putBack is attaching the probes, without the lock;
	// firstBack is when the first hit since then ran, which says they
	// were in by then (zero: none yet). See agent.Disarm.In.
	puttingBack bool
	firstBack   time.Time
}

type holdProbe struct {
	tp     *holdTracepoint
	pc     uint64
	cookie uint64
	link   link.Link
	insn   firstInsn
}

// firstInsn is what the probed instruction does that the capture must know:
// it runs before the thread stops (see the package doc).
type firstInsn struct {
	len int
	// The memory it writes: at base register + index register × scale +
	// disp (registers as indexes in struct pt_regs; -1: none), size bytes.
	// size 0: it writes none. rep: size bytes per RCX.
	writes           bool
	base, index      int
	scale            uint64
	disp             int64
	size             uint64
	rep, ripRelative bool
	// xmm is the one vector register it writes, -1 if none; floats says
	// it may write others, or x87 or MMX state: then every
	// floating-point register is suspect.
	xmm       int
	floats    bool
	undecoded bool // it could not be decoded: all of memory is suspect
}

// attachHold seizes every thread of pid and returns the target once it is
// traced. The process never stops for it.
func attachHold(ctx context.Context, pid int, budget float64) (*holdTarget, error) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	if _, err := os.Stat(exe); err != nil {
		return nil, fleet.Errorf(fleet.CodeNoProcess, "attaching to pid %d: the process is gone", pid)
	}
	snap, tgt, err := snapshot.Open(pid)
	if err != nil {
		return nil, fleet.Errorf(fleet.CodeAttach, "attaching to pid %d: %v", pid, err)
	}
	probes, err := newProbeSet(exe)
	if err != nil {
		snap.Close()
		return nil, fleet.Errorf(fleet.CodeAttach, "attaching to pid %d: %v", pid, err)
	}
	t := &holdTarget{
		pid:      pid,
		probes:   probes,
		hits:     make(chan agent.Hit, 1024),
		ready:    make(chan error, 1),
		exited:   make(chan struct{}),
		snap:     snap,
		tgt:      tgt,
		tps:      make(map[string]*holdTracepoint),
		byCookie: make(map[uint64]*holdProbe),
	}
	t.budget.init(budget, time.Now())
	go t.loop()
	select {
	case err := <-t.ready:
		if err != nil {
			<-t.exited
			return nil, err
		}
	case <-ctx.Done():
		// The loop seizes on; the worker that gives up exits, and the
		// kernel lets the threads go.
		return nil, ctx.Err()
	}
	return t, nil
}

func (t *holdTarget) Hits() <-chan agent.Hit { return t.hits }

// Stopped returns how long threads of the process have spent stopped by
// hits since attach.
func (t *holdTarget) Stopped() time.Duration { return t.budget.Stopped() }

// loop seizes the process, then serves its stops until it exits. It ends
// with its OS thread still locked, so that the thread exits with it: a
// thread that ends lets its tracees go, as a process that dies does.
func (t *holdTarget) loop() {
	runtime.LockOSThread()
	if t.budget.fraction > 0 {
		hurry()
	}
	defer close(t.exited)
	defer func() {
		t.mu.Lock()
		t.hitsDone = true
		close(t.hits)
		t.mu.Unlock()
	}()
	if err := t.seize(); err != nil {
		t.exitErr = err
		t.ready <- err
		t.closeAll()
		return
	}
	t.ready <- nil
	for {
		tid, ws, err := peek()
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// No tracee left: the process is gone.
			t.end(agent.ErrProcessExited{Pid: t.pid})
			return
		}
		switch {
		case ws.Exited() || ws.Signaled():
			consume(tid)
			if tid == t.pid {
				status := ws.ExitStatus()
				if ws.Signaled() {
					status = 128 + int(ws.Signal())
				}
				t.end(agent.ErrProcessExited{Pid: t.pid, Status: status})
				return
			}
		case ws.Stopped():
			if !t.stopped(tid, ws) {
				return
			}
		}
	}
}

// peek waits for a stop or an exit of a thread this OS thread traces, and
// returns it without consuming it. A stop that wait4 consumes has its signal
// cleared in the kernel until the thread is resumed with it: a worker that
// exited in between (at Detach, or killed) would take that signal with it,
// and a SIGURG lost so leaves the Go runtime waiting for it for ever (it
// sends no other to that thread, and a garbage collection then waits for
// a loop it cannot preempt; TestAttachWhileThreadsEnd saw the target's hot
// loop stuck). A stop peeked at ends with its resume (resume, or
// PTRACE_LISTEN); an exit with consume.
func peek() (tid int, ws syscall.WaitStatus, err error) {
	var info childInfo
	_, _, errno := unix.Syscall6(unix.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&info)), unix.WEXITED|unix.WSTOPPED|unix.WALL|unix.WNOTHREAD|unix.WNOWAIT, 0, 0)
	if errno != 0 {
		return 0, 0, errno
	}
	// The status as wait4 would have put it.
	switch info.code {
	case cldExited:
		ws = syscall.WaitStatus(info.status&0xff) << 8
	case cldKilled:
		ws = syscall.WaitStatus(info.status & 0x7f)
	case cldDumped:
		ws = syscall.WaitStatus(info.status&0x7f) | 0x80
	default: // CLD_TRAPPED, CLD_STOPPED: the signal, and the ptrace event above it
		ws = syscall.WaitStatus(info.status&0xffff)<<8 | 0x7f
	}
	return int(info.pid), ws, nil
}

// The si_code of a child's siginfo_t (CLD_* in <signal.h>).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// childInfo is the siginfo_t that waitid fills in about a child.
type childInfo struct {
	signo, errno, code, _ int32
	pid                   int32
	uid                   uint32
	status                int32
	_                     [100]byte
}

// consume consumes the report of thread tid that peek returned: an exit,
// or a stop that could not be ended.
func consume(tid int) {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(tid, &ws, unix.WALL|unix.WNOTHREAD|unix.WNOHANG, nil); err != syscall.EINTR {
			return
		}
	}
}

// resume ends the stop of thread tid that peek returned, delivering sig. A
// thread that cannot be resumed (killed meanwhile) has its report consumed,
// or peek would return it again and again.
func resume(tid int, sig syscall.Signal) {
	if err := unix.PtraceCont(tid, int(sig)); err != nil {
		consume(tid)
	}
}

// hurryNice is the niceness of the worker's threads under a stop budget.
const hurryNice = -10

// hurry raises the scheduling priority of every thread of this worker,
// which captures the hits of one process: while it captures, a thread of
// that process waits, and on a busy machine a capture at the priority of
// everything else waited for a CPU, so that one stop grew to hundreds of
// milliseconds (its loop thread alone was not enough: it waits for the
// runtime's other threads, the garbage collector's among them). The stop
// budget bounds the time the worker holds threads, and so the CPU it
// takes at this priority. Threads inherit it from the thread that starts
// them; one may start while the list is read, so it goes round until a
// pass finds none left. Without the right to raise it (CAP_SYS_NICE), the
// worker runs as it was.
func hurry() {
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return
		}
		fresh := 0
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, hurryNice); err != nil && err != unix.ESRCH {
				return
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			return
		}
	}
}

// seize traces every thread of the process: those that exist now, found in
// /proc until a pass finds no new one, and through PTRACE_O_TRACECLONE
// those they start. Call it on the loop's thread.
func (t *holdTarget) seize() error {
	seen := make(map[int]bool)
	for again := true; again; {
		again = false
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", t.pid))
		if err != nil {
			return fleet.Errorf(fleet.CodeNoProcess, "attaching to pid %d: the process is gone", t.pid)
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil || seen[tid] {
				continue
			}
			// The options go with the seize: PTRACE_SETOPTIONS would need
			// the thread stopped, and a thread it starts meanwhile would
			// go untraced.
			_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, unix.PTRACE_O_TRACECLONE|unix.PTRACE_O_TRACEEXEC, 0, 0)
			err = nil
			if errno != 0 {
				err = errno
			}
			switch {
			case errors.Is(err, unix.ESRCH):
				continue // the thread ended meanwhile
			case errors.Is(err, unix.EPERM) && tracedBy(t.pid, tid, unix.Gettid()):
				// A seized thread started it after the last pass over
				// /proc: PTRACE_O_TRACECLONE traced it from its start,
				// and its first stop comes to the loop as any new
				// thread's.
				err = nil
			case err != nil && len(seen) == 0:
				return attachError(t.pid, err)
			case err != nil:
				return fleet.Errorf(fleet.CodeAttach, "attaching to thread %d of pid %d: %v", tid, t.pid, err)
			case !tracedBy(t.pid, tid, unix.Gettid()):
				// It ended before the seize, and its id went to a
				// thread of another process (see attachThread): let it
				// go. The next pass lists it no more.
				release(tid)
				continue
			}
			seen[tid] = true
			again = true
		}
	}
	return nil
}

// release lets go of thread tid, seized by the calling thread and running:
// PTRACE_DETACH wants it stopped. A signal that stopped it before the
// interrupt did is delivered as it goes.
func release(tid int) {
	if unix.PtraceInterrupt(tid) != nil {
		return
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		return
	}
	sig := 0
	if event := uint32(ws) >> 16; event == 0 && ws.StopSignal() != unix.SIGTRAP {
		sig = int(ws.StopSignal()) // a signal-delivery stop
	}
	unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0)
}

// tracedBy reports whether thread tid of pid is traced by the thread
// tracer.
func tracedBy(pid, tid, tracer int) bool {
	st, ok := readStatus(pid, tid)
	return ok && st.Tracer == tracer
}

// stopped serves one ptrace stop of thread tid; it returns false when the
// loop must end (the process ran a new program).
func (t *holdTarget) stopped(tid int, ws syscall.WaitStatus) bool {
	sig := ws.StopSignal()
	switch event := uint32(ws) >> 16; event {
	case 0:
		// A signal-delivery stop: a hit, or a signal of the process's
		// own, which goes on to it.
	case unix.PTRACE_EVENT_STOP:
		if sig == unix.SIGSTOP || sig == unix.SIGTSTP || sig == unix.SIGTTIN || sig == unix.SIGTTOU {
			// A group stop: the process was stopped, and stays so until
			// someone sends it SIGCONT.
			if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_LISTEN, uintptr(tid), 0, 0, 0, 0); errno != 0 {
				consume(tid)
			}
			return true
		}
		// A new thread's first stop, or the end of a group stop.
		resume(tid, 0)
		return true
	case unix.PTRACE_EVENT_EXEC:
		t.end(fmt.Errorf("pid %d ran a new program (exec): its tracepoints are gone with the old one", t.pid))
		resume(tid, 0)
		return false
	default:
		resume(tid, 0)
		return true
	}
	if sig != sigHit {
		resume(tid, sig)
		return true
	}
	if rec, ok := t.probes.take(tid); ok {
		t.hit(tid, &rec)
	}
	// The SIGURG goes on: it may be the Go runtime's own preemption
	// request merged with ours (one pending signal of a number), and a
	// runtime whose request is never delivered stops sending more to that
	// thread (m.signalPending). One it did not ask for, it ignores.
	resume(tid, sig)
	return true
}

// end records why the target ended and removes its probes.
func (t *holdTarget) end(err error) {
	t.mu.Lock()
	if t.exitErr == nil && !t.detached {
		t.exitErr = err
	}
	t.mu.Unlock()
	t.closeAll()
}

// closeAll removes every probe and stops the budget's timer.
func (t *holdTarget) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range t.tps {
		t.release(tp)
	}
	if t.gateTimer != nil {
		t.gateTimer.Stop()
	}
}

// hit captures the hit of thread tid, stopped for it. Call it on the loop's
// thread: the floating-point registers are read with ptrace when asked for.
func (t *holdTarget) hit(tid int, rec *hitRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The stop began at the probe, before the kernel signalled the thread
	// and woke this loop: charge it from there.
	defer func() {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		d := time.Duration(ts.Nano() - int64(rec.Time))
		if d < 0 || d > time.Minute {
			d = 0
		}
		t.charge(d)
	}()
	p := t.byCookie[rec.Cookie]
	if p == nil || t.detached {
		return // a probe cleared meanwhile
	}
	for _, q := range t.probesAtLocked(p) {
		t.hitProbe(tid, rec, q)
	}
}

// probesAtLocked returns p, which recorded a hit, and the other probes at
// its instruction whose hits stop the thread (not taken out by the rate
// limit), in the order they were set. Every probe at an instruction fires
// at each run of it, but a thread has one record at a time: the last
// probe's. So a record stands for all of them, and each of their
// tracepoints takes the hit. Lock should be held.
func (t *holdTarget) probesAtLocked(p *holdProbe) []*holdProbe {
	at := []*holdProbe{p}
	for _, q := range t.byCookie {
		if q != p && q.pc == p.pc && q.link != nil {
			at = append(at, q)
		}
	}
	sort.Slice(at, func(i, j int) bool { return at[i].cookie>>32 < at[j].cookie>>32 })
	return at
}

// hitProbe serves the hit of thread tid, recorded in rec, for probe p.
// Lock should be held.
func (t *holdTarget) hitProbe(tid int, rec *hitRecord, p *holdProbe) {
	if t.byCookie[p.cookie] != p {
		return // faulted by an earlier tracepoint's capture at this stop
	}
	tp := p.tp
	now := time.Now()
	if tp.puttingBack && tp.firstBack.IsZero() {
		var mono unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
		tp.firstBack = now.Add(-time.Duration(mono.Nano() - int64(rec.Time)))
	}
	t.takeGateDrops(tp)
	// Without a condition or a hit condition, the rate limit comes first:
	// a hit it refuses costs no capture.
	first := tp.cond == nil && tp.hitOp == 0
	if first {
		tp.seen++
		tp.disarm.Hit(now)
	}
	if first && !tp.limit.Take(now) {
		t.refused(tp, now)
		return
	}
	h, keep, err := t.safeCapture(tid, rec, p)
	if err != nil {
		t.fault(tp, fleet.AsError(err))
		return
	}
	if !keep {
		return
	}
	if !first {
		tp.seen++
		tp.disarm.Hit(now)
	}
	if !first && !tp.limit.Take(now) {
		t.refused(tp, now)
		return
	}
	wallMinusMono, timeErr := t.mono.At(int64(rec.Time))
	h.Time = int64(rec.Time) + wallMinusMono
	h.Dropped, tp.dropped = tp.dropped, 0
	ready := tp.disarm.Vouch(&tp.uncounted)
	hit := agent.Hit{Hit: h, Waiting: tp.disarm.Waiting() || !ready, Rearm: tp.disarm.BackedOff(tp.spec.Limits.MaxHitsPerSecond), TimeErr: timeErr}
	if ready {
		hit.Uncounted = tp.uncounted
	}
	hit.Throttle = t.throttle(tp, hit.Uncounted)
	if t.send(hit) {
		tp.budgetDropped = 0
		tp.budgetOut = tp.budgetOut && !ready
		if ready {
			tp.uncounted = agent.Uncounted{}
		}
	} else {
		// The agent fell behind: never keep the thread stopped for it.
		tp.dropped += h.Dropped + 1
	}
	t.sendFaults()
}

// refused counts a hit the rate limit refused at now, and takes tp's
// probes out when it is the first since they went in: until the next
// window, the hits it would refuse stop no thread. Lock should be held.
func (t *holdTarget) refused(tp *holdTracepoint, now time.Time) {
	tp.dropped++
	if tp.spec.Limits.MaxHitsPerSecond <= 0 || tp.countsEveryHit() {
		return
	}
	if !tp.disarm.Spend(now) {
		tp.wasted++
		return
	}
	t.takeOut(tp, time.Now(), time.Time{})
}

// takeOut takes tp's probes out at now, and puts them back when its window
// ends, or at notBefore if that is later. Lock should be held.
func (t *holdTarget) takeOut(tp *holdTracepoint, now, notBefore time.Time) {
	if tp.rearm != nil {
		tp.rearm.Stop() // asking whether the line went quiet
	}
	var ls []link.Link
	for _, p := range tp.probes {
		// Hits stop no thread from now on: the kernel counts them.
		t.probes.closeSlot(uint32(p.cookie))
		if p.link != nil {
			ls = append(ls, p.link)
			p.link = nil
		}
	}
	tp.arming++
	back := tp.disarm.Out(now)
	if notBefore.After(back) {
		back = notBefore
	}
	// Closing a link waits for the kernel's grace period; the loop must
	// not. The records of hits before the slots closed keep their probe
	// (byCookie) and are refused as wasted.
	go func() {
		for _, l := range ls {
			l.Close()
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.detached || t.tps[tp.spec.ID] != tp {
			return
		}
		tp.rearm = time.AfterFunc(time.Until(back), func() { t.putBack(tp) })
	}()
}

// takeOutForBudget takes out, while the stop budget's gate is closed until
// reopen, the probes of the tracepoints whose dropped hits need not be
// counted one by one. The gate keeps a hit from stopping its thread, but
// not from trapping: on a hot line, a gate closed for most of a second
// left every run of the line a trap (over 100,000 a second in make
// bench-limits at load 30, the service's CPU per request several times
// untraced), and the rate limit, which takes probes out once it refuses a
// hit, saw none to refuse. A tracepoint with a condition keeps its probes:
// its hits are counted at the gate, where no one can estimate how many
// would have held. Lock should be held.
func (t *holdTarget) takeOutForBudget(now, reopen time.Time) {
	for _, tp := range t.tps {
		if !tp.outForBudget() || tp.disarm.IsOut() || len(tp.probes) == 0 {
			continue
		}
		tp.budgetOut = true
		t.takeOut(tp, now, reopen)
	}
}

// putBack attaches tp's probes again for a new window, with the estimate
// of the hits that ran while they were out for its next hit to report.
func (t *holdTarget) putBack(tp *holdTracepoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.detached || t.exitErr != nil || t.tps[tp.spec.ID] != tp || !tp.disarm.IsOut() {
		return
	}
	if t.gateShut && tp.outForBudget() {
		// The budget is not refilled yet: a probe in would trap for
		// nothing.
		tp.rearm = time.AfterFunc(t.budget.untilAllowed(time.Now()), func() { t.putBack(tp) })
		return
	}
	seen, wasted := tp.seen, tp.wasted
	tp.seen, tp.wasted = 0, 0
	for _, p := range tp.probes {
		// The hits the closed slots refused are drops, unless a
		// condition would have filtered some: no one evaluated it.
		n := t.probes.openSlot(uint32(p.cookie))
		wasted += n
		if tp.cond == nil {
			seen += n
			tp.dropped += n
		}
	}
	tp.uncounted.Add(tp.disarm.Rearm(time.Now(), seen, wasted))
	tp.arming++
	tp.puttingBack, tp.firstBack = true, time.Time{}
	arming, probes := tp.arming, append([]*holdProbe(nil), tp.probes...)
	bi := t.snap.BinInfo()
	// Attaching waits for the kernel (tens to hundreds of milliseconds on
	// a loaded host, the service's mmap lock among what it waits for),
	// and a thread that hits the probe as soon as it is in waits for the
	// lock in its stop: attach without it.
	t.mu.Unlock()
	links := make([]link.Link, len(probes))
	var err error
	var failed *holdProbe
	for i, p := range probes {
		sym := "riptrace"
		if fn := bi.PCToFunc(p.pc); fn != nil {
			sym = fn.Name
		}
		if links[i], err = t.probes.attach(t.pid, sym, p.pc, bi.Images[0].StaticBase, p.cookie); err != nil {
			failed = p
			break
		}
	}
	t.mu.Lock()
	current := !t.detached && t.exitErr == nil && t.tps[tp.spec.ID] == tp && tp.arming == arming
	if current && failed == nil {
		// The probes are in now, or were at their first hit: the window
		// and the rate of the next estimate start there, and what ran
		// until then is estimated with the rest.
		in := time.Now()
		if !tp.firstBack.IsZero() && tp.firstBack.Before(in) {
			in = tp.firstBack
		}
		tp.uncounted.Add(tp.disarm.In(in))
		t.askQuiet(tp, tp.disarm.QuietAt())
	}
	if tp.arming == arming {
		tp.puttingBack = false
	}
	for i, p := range probes {
		if links[i] == nil {
			continue
		}
		if !current || t.byCookie[p.cookie] != p {
			// Taken out, cleared or detached meanwhile.
			links[i].Close()
			continue
		}
		p.link = links[i]
	}
	if failed != nil && current {
		t.fault(tp, fleet.Errorf(fleet.CodeAttach, "putting back the uprobe of tracepoint %s at %s:%d (pc %#x): %v; the tracepoint was removed: set it again", tp.spec.ID, tp.file, tp.spec.Location.Line, failed.pc, err))
	}
}

// outForBudget reports whether tp's probes come out while the stop
// budget's gate is closed (see takeOutForBudget).
func (tp *holdTracepoint) outForBudget() bool {
	return tp.cond == nil && !tp.countsEveryHit()
}

// countsEveryHit reports whether tp's hit condition still needs every hit
// counted: its probes then stay in when the allowance is spent, as taking
// them out would lose count.
func (tp *holdTracepoint) countsEveryHit() bool {
	return countsEveryHit(tp.hitOp, int(tp.hitCount), tp.hitVal)
}

// askQuiet has settleQuiet ask at at (for a first time, once the time
// the last estimate allows the line's first hit since the probes went back
// in has passed: Disarm.QuietAt) whether it went quiet. Lock should be
// held.
func (t *holdTarget) askQuiet(tp *holdTracepoint, at time.Time) {
	tp.rearm = time.AfterFunc(time.Until(at), func() { t.settleQuiet(tp) })
}

// quietRetry is how long settleQuiet waits before it tries again to send
// a notice the agent could not take.
const quietRetry = 10 * time.Millisecond

// settleQuiet tells, in a notice, what tp owes its next hit once its line
// has had none since the probes went back in for longer than the last
// estimate allows (agent.Disarm.Quiet): the hits refused before the probes
// came out, and that the estimate of those run while they were out is
// withdrawn. Those waited for a hit that may not come for long (a burst
// that ended while the probes were out), the status saying less
// meanwhile. A hit whose thread waits for the lock now is one the
// estimate is withdrawn for: the hits run with the probes out are then
// unknown, not misstated. While putBack attaches, it does not ask: In has
// yet to add what ran until the probes were in, and putBack asks after.
func (t *holdTarget) settleQuiet(tp *holdTracepoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.detached || t.exitErr != nil || t.tps[tp.spec.ID] != tp || tp.puttingBack {
		return
	}
	if !tp.disarm.Quiet(time.Now(), &tp.uncounted) {
		if tp.disarm.Asking() {
			t.askQuiet(tp, tp.disarm.QuietAt())
		}
		return
	}
	t.takeGateDrops(tp)
	if tp.dropped == 0 && !tp.uncounted.Any() {
		return
	}
	notice := agent.Hit{Hit: fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid, Dropped: tp.dropped}, DropsOnly: true, Uncounted: tp.uncounted, Rearm: tp.disarm.BackedOff(tp.spec.Limits.MaxHitsPerSecond), Throttle: t.throttle(tp, tp.uncounted)}
	if !t.send(notice) {
		// The agent fell behind: what is owed stays, for the next try
		// or the next hit (Quiet says quiet again until a hit comes).
		t.askQuiet(tp, time.Now().Add(quietRetry))
		return
	}
	tp.dropped, tp.budgetDropped, tp.budgetOut = 0, 0, false
	tp.uncounted = agent.Uncounted{}
}

// throttle says why the hits tp reports now, with uncounted u, were
// dropped where the stop budget dropped them rather than the rate limit
// (agent.Hit.Throttle): its gate dropped some, or it took the probes out,
// and u tells of the hits run meanwhile. "" otherwise.
func (t *holdTarget) throttle(tp *holdTracepoint, u agent.Uncounted) string {
	if tp.budgetDropped == 0 && !(tp.budgetOut && u.Any()) {
		return ""
	}
	return fmt.Sprintf("by the stop budget: threads of pid %d may be stopped at most %s of each second (the agent's --stop-budget)", t.pid, t.budget.percent())
}

// send passes h on to the agent if it can take it now. Lock should be
// held.
func (t *holdTarget) send(h agent.Hit) bool {
	if t.hitsDone {
		return false
	}
	select {
	case t.hits <- h:
		return true
	default:
		return false
	}
}

// charge counts a stop of d against the budget, and closes the probes'
// gate once the budget is spent: until it refills, hits are counted in the
// kernel and stop nothing. Lock should be held.
func (t *holdTarget) charge(d time.Duration) {
	now := time.Now()
	t.budget.spend(d, now)
	if t.gateShut || t.budget.allow(now) {
		return
	}
	t.gateShut = true
	t.probes.setGate(true)
	until := t.budget.untilAllowed(now)
	t.gateTimer = time.AfterFunc(until, t.reopen)
	t.takeOutForBudget(now, now.Add(until))
}

// reopen opens the gate once the budget allows a stop again.
func (t *holdTarget) reopen() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.gateShut || t.detached {
		return
	}
	now := time.Now()
	if !t.budget.allow(now) {
		t.gateTimer = time.AfterFunc(t.budget.untilAllowed(now), t.reopen)
		return
	}
	t.gateShut = false
	t.probes.setGate(false)
	// The hits the gate dropped meanwhile are reported now, saying why:
	// a tracepoint whose condition rarely holds may have no hit for long.
	for _, tp := range t.tps {
		t.takeGateDrops(tp)
		if tp.budgetDropped == 0 {
			continue
		}
		notice := agent.Hit{Hit: fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid, Dropped: tp.dropped}, Throttle: t.throttle(tp, agent.Uncounted{}), DropsOnly: true, Waiting: tp.disarm.Waiting()}
		if t.send(notice) {
			tp.dropped, tp.budgetDropped = 0, 0
		}
	}
}

// takeGateDrops counts in tp the hits its probes dropped at the closed
// gate. Lock should be held.
func (t *holdTarget) takeGateDrops(tp *holdTracepoint) {
	for _, p := range tp.probes {
		n := t.probes.takeDropped(uint32(p.cookie))
		tp.dropped += n
		tp.budgetDropped += n
		if tp.cond == nil {
			// Hits of the line all the same, for the hit condition.
			tp.hitCount += n
		}
	}
}

// safeCapture captures a hit, turning a panic while reading the target into
// an error: the tracepoint is then removed, the process runs on.
func (t *holdTarget) safeCapture(tid int, rec *hitRecord, p *holdProbe) (h fleet.Hit, keep bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fleet.Errorf(fleet.CodeInternal, "internal error capturing tracepoint %s on pid %d: %v; the tracepoint was removed (please report it)", p.tp.spec.ID, t.pid, r)
		}
	}()
	return t.capture(tid, rec, p)
}

// capture reads what p's tracepoint asks for from thread tid, held in its
// stop: registers as the probe saw them, memory live. keep is false when
// the condition or hit condition does not hold. Lock should be held.
func (t *holdTarget) capture(tid int, rec *hitRecord, p *holdProbe) (h fleet.Hit, keep bool, err error) {
	tp := p.tp
	regs := rec.ptraceRegs()
	mem := liveMemory{p: t.snap}
	if p.insn.undecoded {
		mem.all = true
	} else if p.insn.writes {
		mem.start, mem.end = p.insn.written(regs)
		if rec.MemAddr == mem.start && rec.MemLen == mem.end-mem.start && rec.MemLen > 0 {
			mem.pre = rec.Mem[:rec.MemLen]
		}
	}
	t.snap.Set(tid, regs, t.floats(tid, rec, p), mem)
	t.tgt.ClearCaches()
	th := t.snap.Thread()
	h = fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid, Time: time.Now().UnixNano()}
	if tp.cond != nil && tp.condUndecided[p.pc] {
		delete(tp.condUndecided, p.pc)
		if scope, err := proc.GoroutineScope(t.tgt, th); err == nil {
			if err := dlvvalue.CondDroppedInScope(scope, tp.spec.Condition); err != nil {
				return h, false, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s was removed: %v", tp.spec.ID, err)
			}
		}
	}
	if tp.cond != nil {
		ok, err := evalBreakpointCondition(t.tgt, th, tp.cond)
		if err != nil {
			return h, false, fleet.Errorf(fleet.CodeBadCondition, "condition %q of tracepoint %s failed at %s:%d: %v; the tracepoint was removed: fix the condition and set it again", tp.spec.Condition, tp.spec.ID, tp.file, tp.spec.Location.Line, err)
		}
		if !ok {
			return h, false, nil
		}
	}
	tp.hitCount++
	if !tp.hitHolds() {
		if tp.hitDone() {
			// Delve disables a breakpoint whose hit condition can hold no
			// more; so does this, sparing the stops.
			for _, p := range tp.probes {
				if p.link != nil {
					p.link.Close()
				}
				delete(t.byCookie, p.cookie)
				t.freeSlots = append(t.freeSlots, uint32(p.cookie))
			}
			tp.probes = nil
		}
		return h, false, nil
	}
	frames, g := dlvvalue.Stack(t.tgt, th, tp.spec.Capture, &h, tp.file, tp.spec.Location.Line)
	if frames == nil {
		return h, true, nil
	}
	scope := proc.FrameToScope(t.tgt, th.ProcessMemory(), g, th.ThreadID(), frames...)
	dlvvalue.Converter{Unreadable: unreadableHere, Pieces: &t.pieces}.ReadWarm(scope, tp.spec.Capture, tp.load, tp.log, &h, &tp.warm)
	return h, true, nil
}

// hitHolds reports whether the hit condition holds for the hit just
// counted.
func (tp *holdTracepoint) hitHolds() bool { return hitHolds(tp.hitOp, int(tp.hitCount), tp.hitVal) }

// hitDone reports whether the hit condition can hold no more.
func (tp *holdTracepoint) hitDone() bool { return hitDone(tp.hitOp, int(tp.hitCount), tp.hitVal) }

// floats returns the loader of the hit thread's floating-point registers,
// or nil when they are not the probe's: the probed instruction may have
// written any of them, or the thread is not where that instruction left it
// (the kernel ran a signal handler's setup first). The one vector register
// the instruction wrote, if any, is left out: a value there reads as not
// captured, and every other one as it was at the probe.
func (t *holdTarget) floats(tid int, rec *hitRecord, p *holdProbe) func(*linutil.AMD64Registers) error {
	if p.insn.floats || p.insn.undecoded {
		return nil
	}
	var live unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &live); err != nil {
		return nil
	}
	if live.Rip != p.pc+uint64(p.insn.len) {
		if f, g := t.snap.BinInfo().PCToFunc(live.Rip), t.snap.BinInfo().PCToFunc(p.pc); f == nil || f != g {
			return nil
		}
	}
	return func(r *linutil.AMD64Registers) error {
		var xs amd64util.AMD64Xstate
		if err := getXstate(tid, &xs); err != nil {
			return err
		}
		r.Fpregs = withoutVector(xs.Decode(), p.insn.xmm)
		r.Fpregset = &xs
		return nil
	}
}

// withoutVector returns regs without vector register n (its XMM, YMM and
// ZMM parts); n < 0 leaves regs as they are.
func withoutVector(regs []proc.Register, n int) []proc.Register {
	if n < 0 {
		return regs
	}
	suffix := strconv.Itoa(n)
	out := regs[:0]
	for _, r := range regs {
		switch r.Name {
		case "XMM" + suffix, "YMM" + suffix, "ZMM" + suffix:
			continue
		}
		out = append(out, r)
	}
	return out
}

// getXstate reads thread tid's floating-point and vector registers as
// Delve's native backend does. The XMM registers are in the XSAVE area's
// legacy region, which Delve's native backend reads with PTRACE_GETFPREGS
// and this reads from the same buffer: left out, every XMM register would
// read as zero.
func getXstate(tid int, xs *amd64util.AMD64Xstate) error {
	buf := make([]byte, cpuid.AMD64XstateMaxSize())
	iov := unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
	if err := ptraceRegset(tid, 0x202 /* NT_X86_XSTATE */, &iov); err != nil {
		return fmt.Errorf("reading the floating-point registers: %w", err)
	}
	xs.Xsave = buf[:iov.Len]
	return amd64util.AMD64XstateRead(xs.Xsave, true, xs, cpuid.AMD64XstateZMMHi256Offset())
}

// unreadableHere names what the capture could not read because the probed
// instruction ran first (see the package doc); other unreadable values are
// left to dlvvalue's rules.
func unreadableHere(v *api.Variable) (fleet.Variable, bool) {
	fv := fleet.Variable{Name: v.Name, Type: api.ShortenType(v.Type)}
	switch {
	case v.Unreadable == "read out of bounds" && strings.Contains(strings.ToLower(v.LocationExpr), "xmm"):
		fv.Value = "<not captured: " + uprobes.KindName(v.Kind) + ">"
		fv.Unreadable = "the value is in a floating-point register that the line's first instruction changed before the thread stopped; trace the next line to read it"
		return fv, true
	case strings.Contains(v.Unreadable, snapshot.ErrNotCaptured.Error()):
		fv.Value = "<not captured: " + uprobes.KindName(v.Kind) + ">"
		fv.Unreadable = "the line's first instruction wrote this memory before the thread stopped, so it no longer holds the line's value; trace the next line to read it"
		return fv, true
	}
	return fleet.Variable{}, false
}

// Set installs spec. A spec with the ID of an installed tracepoint replaces
// it once the new one is in place; if the new one fails, the old one stays,
// hitting, with its hit count.
func (t *holdTarget) Set(ctx context.Context, spec agent.Tracepoint) (agent.Placement, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.detached || t.exitErr != nil {
		return agent.Placement{}, t.gone()
	}
	tp := &holdTracepoint{spec: spec, load: dlvvalue.LoadConfig(spec.Capture)}
	// Its estimates leave out the time the hits held the line (stops
	// of the process's threads; those of other tracepoints too, so
	// rather more than less).
	tp.disarm.Held = t.budget.held
	if spec.Condition != "" {
		cond, err := parser.ParseExpr(spec.Condition)
		if err != nil {
			return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: condition %q is not a Go expression: %v", spec.ID, spec.Condition, err)
		}
		tp.cond = cond
	}
	if spec.HitCondition != "" {
		op, v, err := parseHitCondition(spec.HitCondition)
		if err != nil {
			return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: %v", spec.ID, err)
		}
		tp.hitOp, tp.hitVal = op, v
	}
	file, err := agent.ResolveFile(t.snap.BinInfo().Sources, spec.Location)
	if err != nil {
		return agent.Placement{}, err
	}
	tp.file = file
	if tp.log, err = fleet.ParseLogMessage(spec.LogMessage); err != nil {
		return agent.Placement{}, err
	}
	pcs, err := proc.FindFileLocation(t.tgt, file, spec.Location.Line)
	if err != nil {
		var nf *proc.ErrCouldNotFindLine
		if errors.As(err, &nf) {
			return agent.Placement{}, fleet.Errorf(fleet.CodeNoCode, "%s:%d has no code in %s: the compiler emitted no instructions for that line (a comment, a blank line, a declaration, or code optimized away); pick a line with a statement", file, spec.Location.Line, exeName(t.pid))
		}
		return agent.Placement{}, fleet.Errorf(fleet.CodeInternal, "finding the code of %s:%d: %v", file, spec.Location.Line, err)
	}
	// A condition that reads a part of a value left out at a PC would be
	// decided on a zero there: refused now, or at the first hit where
	// DWARF alone cannot tell.
	undecided, err := dlvvalue.DroppedInCondition(t.snap.BinInfo(), pcs, spec.Condition)
	if err != nil {
		return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: %v", spec.ID, err)
	}
	tp.condUndecided = undecided
	tp.limit.Init(spec.Limits.MaxHitsPerSecond)
	if err := t.install(tp, pcs); err != nil {
		t.release(tp)
		return agent.Placement{}, err
	}
	// The window starts once the probes are in: attaching them can take
	// hundreds of milliseconds on a loaded host (see agent.Disarm.In). No
	// hit is served before, as the lock is held.
	tp.disarm.Armed(time.Now())
	if old := t.tps[spec.ID]; old != nil {
		t.release(old)
	}
	t.tps[spec.ID] = tp
	pl := agent.Placement{Pid: t.pid, File: file, Line: spec.Location.Line, PCs: pcs}
	if fn := t.snap.BinInfo().PCToFunc(pcs[0]); fn != nil {
		pl.Function = fn.Name
	}
	return pl, nil
}

// install attaches tp's probes, one per PC. On error, what it attached is
// in tp for release. Lock should be held.
func (t *holdTarget) install(tp *holdTracepoint, pcs []uint64) error {
	bi := t.snap.BinInfo()
	for _, pc := range pcs {
		insn, err := t.decode(pc)
		if err != nil {
			return fleet.Errorf(fleet.CodeInternal, "reading the instruction at %s:%d (pc %#x): %v", tp.file, tp.spec.Location.Line, pc, err)
		}
		slot := t.nextSlot
		if n := len(t.freeSlots); n > 0 {
			slot, t.freeSlots = t.freeSlots[n-1], t.freeSlots[:n-1]
		} else if t.nextSlot == maxProbes {
			return fleet.Errorf(fleet.CodeInternal, "too many probes in pid %d: all %d are in use; clear some tracepoints", t.pid, maxProbes)
		} else {
			t.nextSlot++
		}
		t.probes.takeDropped(slot)
		t.probes.openSlot(slot)
		if err := t.probes.setPlan(slot, insn.plan()); err != nil {
			t.freeSlots = append(t.freeSlots, slot)
			return fleet.Errorf(fleet.CodeInternal, "storing the plan of a uprobe: %v", err)
		}
		// The cookie's low half is the slot; its high half counts the
		// probes, so that a record of a probe cleared a moment ago never
		// passes for one of a new probe on the same slot.
		t.cookieGen++
		cookie := uint64(t.cookieGen)<<32 | uint64(slot)
		sym := "riptrace"
		if fn := bi.PCToFunc(pc); fn != nil {
			sym = fn.Name
		}
		l, err := t.probes.attach(t.pid, sym, pc, bi.Images[0].StaticBase, cookie)
		if err != nil {
			t.freeSlots = append(t.freeSlots, slot)
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				return fleet.Errorf(fleet.CodeAttach, "attaching a uprobe at %s:%d (pc %#x): %v: the kernel refused the agent a uprobe; give it CAP_PERFMON and CAP_BPF, and where the kernel asks for more CAP_SYS_ADMIN", tp.file, tp.spec.Location.Line, pc, err)
			}
			return fleet.Errorf(fleet.CodeAttach, "attaching a uprobe at %s:%d (pc %#x): %v", tp.file, tp.spec.Location.Line, pc, err)
		}
		p := &holdProbe{tp: tp, pc: pc, cookie: cookie, link: l, insn: insn}
		tp.probes = append(tp.probes, p)
		t.byCookie[cookie] = p
	}
	return nil
}

// release closes tp's probes and gives back their slots. Lock should be
// held.
func (t *holdTarget) release(tp *holdTracepoint) {
	if tp.rearm != nil {
		tp.rearm.Stop()
	}
	for _, p := range tp.probes {
		if p.link != nil {
			p.link.Close()
		}
		delete(t.byCookie, p.cookie)
		t.freeSlots = append(t.freeSlots, uint32(p.cookie))
	}
	tp.probes = nil
	if t.tps[tp.spec.ID] == tp {
		delete(t.tps, tp.spec.ID)
	}
}

func (t *holdTarget) Clear(ctx context.Context, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.tps[id]; tp != nil {
		t.release(tp)
	}
	return nil
}

// Detach removes every probe. The threads stay seized until this process
// exits (a worker exits right after), which lets them go as its death
// would: at most with a SIGURG to deliver. If the process had exited, it
// returns agent.ErrProcessExited.
func (t *holdTarget) Detach(ctx context.Context) error {
	t.mu.Lock()
	t.detached = true
	for _, tp := range t.tps {
		t.release(tp)
	}
	if t.gateTimer != nil {
		t.gateTimer.Stop()
	}
	err := t.exitErr
	t.mu.Unlock()
	if _, ok := err.(agent.ErrProcessExited); ok {
		return err
	}
	return nil
}

func (t *holdTarget) gone() error {
	if t.exitErr != nil {
		return t.exitErr
	}
	return fmt.Errorf("pid %d is detached", t.pid)
}

// fault removes tp and reports why. Lock should be held.
func (t *holdTarget) fault(tp *holdTracepoint, e *fleet.Error) {
	t.takeGateDrops(tp)
	t.release(tp)
	// The hits dropped since the last one sent are counted with the
	// removal, or they would be lost from the tracepoint's tally.
	t.faults = append(t.faults, agent.Hit{Hit: fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid, Dropped: tp.dropped}, Fault: e})
	tp.dropped = 0
	t.sendFaults()
}

// sendFaults passes on the removal notices the agent could not take yet.
// Lock should be held.
func (t *holdTarget) sendFaults() {
	for len(t.faults) > 0 && t.send(t.faults[0]) {
		t.faults = t.faults[1:]
	}
}

// decode reads the instruction at pc from the executable (the process's
// text holds the probes' breakpoints) and says what it writes.
func (t *holdTarget) decode(pc uint64) (firstInsn, error) {
	buf := make([]byte, 16)
	n, err := t.snap.ReadExecutable(buf, pc)
	if err != nil && n == 0 {
		return firstInsn{}, err
	}
	inst, err := x86asm.Decode(buf[:n], 64)
	if err != nil {
		return firstInsn{undecoded: true, len: 1}, nil
	}
	return describe(inst), nil
}

// describe says what inst writes that a capture after it would misread.
func describe(inst x86asm.Inst) firstInsn {
	fi := firstInsn{len: inst.Len, base: -1, index: -1, xmm: -1}
	switch inst.Op {
	case x86asm.CMP, x86asm.TEST, x86asm.PUSH, x86asm.CALL, x86asm.JMP, x86asm.BT,
		x86asm.UCOMISS, x86asm.UCOMISD, x86asm.COMISS, x86asm.COMISD, x86asm.NOP,
		x86asm.PREFETCHT0, x86asm.PREFETCHT1, x86asm.PREFETCHT2, x86asm.PREFETCHNTA:
		// They write no operand (a push or a call writes below the
		// stack pointer: no frame's memory).
		return fi
	}
	if r, ok := inst.Args[0].(x86asm.Reg); ok {
		switch {
		case r >= x86asm.X0 && r <= x86asm.X15 && writesOnlyFirst(inst.Op):
			fi.xmm = int(r - x86asm.X0)
		case (r >= x86asm.X0 && r <= x86asm.X15) || (r >= x86asm.F0 && r <= x86asm.F7) || (r >= x86asm.M0 && r <= x86asm.M7):
			fi.floats = true
		}
	}
	switch inst.Op {
	case x86asm.FXRSTOR, x86asm.FXRSTOR64, x86asm.XRSTOR, x86asm.XRSTOR64, x86asm.LDMXCSR, x86asm.EMMS, x86asm.FNINIT:
		// They load floating-point state from memory, or reset it.
		fi.floats = true
	}
	m, ok := inst.Args[0].(x86asm.Mem)
	if !ok {
		return fi
	}
	fi.writes = true
	fi.size = uint64(inst.MemBytes)
	if fi.size == 0 {
		fi.size = 16
	}
	fi.disp = m.Disp
	fi.scale = uint64(m.Scale)
	if m.Base == x86asm.RIP {
		fi.ripRelative = true
	} else {
		fi.base = ptRegIndex(m.Base)
	}
	fi.index = ptRegIndex(m.Index)
	switch inst.Op {
	case x86asm.MOVSB, x86asm.MOVSW, x86asm.MOVSD, x86asm.MOVSQ, x86asm.STOSB, x86asm.STOSW, x86asm.STOSD, x86asm.STOSQ:
		// A string instruction repeats RCX times under a REP prefix (on
		// others, F2 and F3 choose the instruction).
		for _, p := range inst.Prefix {
			if p&0xff == x86asm.PrefixREP || p&0xff == x86asm.PrefixREPN {
				fi.rep = true
			}
		}
	}
	return fi
}

// writesOnlyFirst reports whether op, with a vector register as its first
// operand, writes that register and no other floating-point one: the scalar
// arithmetic, moves and logic Go emits for floats. (PCMPESTRM, for one,
// writes XMM0 whatever its operands.)
func writesOnlyFirst(op x86asm.Op) bool {
	switch op {
	case x86asm.MOVSD_XMM, x86asm.MOVSS, x86asm.MOVQ, x86asm.MOVD,
		x86asm.MOVUPS, x86asm.MOVAPS, x86asm.MOVUPD, x86asm.MOVAPD, x86asm.MOVDQU, x86asm.MOVDQA,
		x86asm.ADDSD, x86asm.SUBSD, x86asm.MULSD, x86asm.DIVSD, x86asm.SQRTSD, x86asm.MINSD, x86asm.MAXSD,
		x86asm.ADDSS, x86asm.SUBSS, x86asm.MULSS, x86asm.DIVSS, x86asm.SQRTSS, x86asm.MINSS, x86asm.MAXSS,
		x86asm.XORPS, x86asm.XORPD, x86asm.ANDPS, x86asm.ANDPD, x86asm.ANDNPS, x86asm.ANDNPD,
		x86asm.ORPS, x86asm.ORPD, x86asm.PXOR, x86asm.PAND, x86asm.POR,
		x86asm.CVTSI2SD, x86asm.CVTSI2SS, x86asm.CVTSD2SS, x86asm.CVTSS2SD,
		x86asm.ROUNDSD, x86asm.ROUNDSS, x86asm.UNPCKLPD, x86asm.PUNPCKLQDQ:
		return true
	}
	return false
}

// ptRegIndex is r's index in struct pt_regs as hitRecord keeps it, or -1.
func ptRegIndex(r x86asm.Reg) int {
	order := []x86asm.Reg{x86asm.R15, x86asm.R14, x86asm.R13, x86asm.R12, x86asm.RBP, x86asm.RBX, x86asm.R11, x86asm.R10, x86asm.R9, x86asm.R8, x86asm.RAX, x86asm.RCX, x86asm.RDX, x86asm.RSI, x86asm.RDI}
	for i, o := range order {
		if o == r {
			return i
		}
	}
	if r == x86asm.RSP {
		return 19
	}
	return -1
}

// plan is what the probe copies before the instruction writes it.
func (fi firstInsn) plan() writePlan {
	if !fi.writes || fi.rep || fi.size > maxWrite {
		return writePlan{}
	}
	w := writePlan{Size: fi.size, Disp: uint64(fi.disp), Base: noReg, Index: noReg, Scale: fi.scale}
	if fi.base >= 0 {
		w.Base = uint64(fi.base)
	}
	if fi.ripRelative {
		w.Base, w.Disp = 16, uint64(fi.disp+int64(fi.len))
	}
	if fi.index >= 0 {
		w.Index = uint64(fi.index)
	}
	return w
}

// written returns the memory [start, end) the instruction wrote, from the
// registers it ran with.
func (fi firstInsn) written(regs *linutil.AMD64PtraceRegs) (start, end uint64) {
	g := []uint64{regs.R15, regs.R14, regs.R13, regs.R12, regs.Rbp, regs.Rbx, regs.R11, regs.R10, regs.R9, regs.R8, regs.Rax, regs.Rcx, regs.Rdx, regs.Rsi, regs.Rdi, regs.Orig_rax, regs.Rip, regs.Cs, regs.Eflags, regs.Rsp, regs.Ss}
	addr := uint64(fi.disp)
	if fi.ripRelative {
		addr += regs.Rip + uint64(fi.len)
	}
	if fi.base >= 0 {
		addr += g[fi.base]
	}
	if fi.index >= 0 {
		addr += g[fi.index] * fi.scale
	}
	size := fi.size
	if fi.rep {
		size *= min(regs.Rcx, 1<<20)
	}
	return addr, addr + size
}

// liveMemory is the memory of a process whose hit thread is held in a
// ptrace stop, read live; but the bytes the probed instruction wrote before
// the thread stopped read as they were before it, from the probe's copy, or
// if it has none, as not captured.
type liveMemory struct {
	p          *snapshot.Process
	start, end uint64
	pre        []byte // the bytes at [start, end) before the instruction; nil: not copied
	all        bool   // the instruction could not be decoded
}

func (m liveMemory) ReadMemory(buf []byte, addr uint64) (int, error) {
	end := addr + uint64(len(buf))
	overlaps := addr < m.end && end > m.start
	if m.all || (overlaps && m.pre == nil) {
		return 0, fmt.Errorf("%w: %d bytes at %#x, which the line's first instruction wrote before the thread stopped", snapshot.ErrNotCaptured, len(buf), addr)
	}
	n, err := m.p.ReadLive(buf, addr)
	if err != nil {
		return n, err
	}
	if overlaps {
		lo, hi := max(addr, m.start), min(end, m.end)
		copy(buf[lo-addr:hi-addr], m.pre[lo-m.start:])
	}
	return n, nil
}

// ptraceRegset is PTRACE_GETREGSET for thread tid.
func ptraceRegset(tid int, which int, iov *unix.Iovec) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETREGSET, uintptr(tid), uintptr(which), uintptr(unsafe.Pointer(iov)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
