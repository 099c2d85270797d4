package ebpf

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"go/parser"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
	"github.com/riptrace/riptrace/agent/internal/snapshot"
	"github.com/riptrace/riptrace/agent/internal/uprobes"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/logflags"
	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/linutil"
	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

//go:generate clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -Wall -c bpf/probe.c -o bpf/probe.o

//go:embed bpf/probe.o
var probeObject []byte

// Backend attaches uprobes. It holds no state: every target loads its own
// BPF program and maps.
type Backend struct{}

// New returns the eBPF backend.
func New() *Backend { return &Backend{} }

// Available reports whether this host can run the backend: the architecture,
// the kernel and the permissions to load BPF programs. The error says what
// is missing.
func Available() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the memlock limit for BPF maps: %w", err)
	}
	coll, err := loadCollection(nil)
	if err != nil {
		return err
	}
	coll.Close()
	return nil
}

// haveUprobeMulti tells whether the kernel has uprobe_multi links (Linux
// 6.6): a tracepoint's probes are then one link, removed in one go. Each
// uprobe attached through a perf event is removed on its own, and the
// kernel waits for an RCU tasks-trace grace period under a global mutex at
// each one (perf_uprobe_destroy): about 0.1 s a probe, so that an agent
// holding 50 took 6.4 s to stop (make bench-resources).
var haveUprobeMulti = sync.OnceValue(func() bool {
	return features.HaveBPFLinkUprobeMulti() == nil
})

// loadCollection loads the program and its maps, with events as its ring
// buffer (nil: one of its own).
func loadCollection(events *ebpf.Map) (*ebpf.Collection, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(probeObject))
	if err != nil {
		return nil, fmt.Errorf("reading the BPF object: %w", err)
	}
	if haveUprobeMulti() {
		spec.Programs["capture"].AttachType = ebpf.AttachTraceUprobeMulti
	}
	// The reader takes the drops counted from the map (sweepDrops).
	spec.Maps["buckets"].Flags |= unix.BPF_F_MMAPABLE
	var opts ebpf.CollectionOptions
	if events != nil {
		opts.MapReplacements = map[string]*ebpf.Map{"events": events}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("loading the BPF program: %w: run the agent as root, or give it CAP_BPF and CAP_PERFMON (in Kubernetes: securityContext.capabilities.add: [BPF, PERFMON])", err)
		}
		return nil, fmt.Errorf("loading the BPF program (the eBPF backend needs Linux 5.17 or later: ring buffers, attach cookies and bpf_loop): %w", err)
	}
	return coll, nil
}

// Attach loads the program for pid and reads its debug info. Nothing is
// attached to the process until a tracepoint is set.
func (b *Backend) Attach(ctx context.Context, pid int) (agent.Target, error) {
	logflags.Setup(false, "", "")
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	if _, err := os.Stat(exe); err != nil {
		return nil, fleet.Errorf(fleet.CodeNoProcess, "attaching to pid %d: the process is gone", pid)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fleet.Errorf(fleet.CodeAttach, "attaching to pid %d: raising the memlock limit for BPF maps: %v", pid, err)
	}
	// A tracepoint's estimates need what a trap costs here: measured
	// meanwhile, before a tracepoint comes as a rule (see Set).
	go trapCost()
	if key, err := keyOf(exe); err == nil {
		if t := takePrepared(ctx, pid, key); t != nil {
			return t, nil
		}
	}
	t, err := newTarget(pid, exe)
	if err != nil {
		return nil, fleet.Errorf(fleet.CodeAttach, "attaching to pid %d with eBPF: %v", pid, err)
	}
	return t, nil
}

// target is one process with uprobes. Its program and maps are its own but
// for the ring buffer, which is its executable's: the executable's reader
// decodes its hits (see executable).
//
// Its goroutines: watch waits for the process to exit; teardown, once the
// target is closed, frees the program and maps.
type target struct {
	pid  int
	exe  string
	hits chan agent.Hit
	// pieces keeps what is left out of the variables Delve's evaluator
	// reads in pieces, by PC.
	pieces dlvvalue.PieceCache

	coll   *ebpf.Collection
	counts bucketCounts // coll's buckets, mapped
	ex     *link.Executable
	pidfd  int
	spent  *ringbuf.Reader   // the BPF program's word that an allowance is spent (see disarming)
	mono   uprobes.MonoClock // used by disarming alone
	closed chan struct{}     // closed by close
	done   chan struct{}     // closed when teardown has ended

	// sendMu orders the reader's sends on hits (or out) before teardown
	// closes hits.
	sendMu sync.Mutex
	sent   bool             // hits is closed
	out    chan<- agent.Hit // where hits go instead of hits (DeliverTo)
	// transit counts the hits sent for the agent's watermarks (Follow).
	transit atomic.Pointer[agent.Transit]

	// mu is the executable's (x.mu): it guards the fields below, the
	// snapshot and Delve target the reader decodes with, and the debug info
	// they share with the other processes of the executable.
	mu       *sync.Mutex
	x        *executable
	tps      map[string]*tracepoint
	nextPlan uint32
	freePlan []uint32
	buckets  []bool // bucket slots in use
	exitErr  error
	ended    bool

	snap   *snapshot.Process
	mem    regionMemory             // of the hit being decoded: one for all, reset by each
	regs   *linutil.AMD64PtraceRegs // of the hit being decoded
	tgt    *proc.Target
	di     *debugInfo
	stacks dlvvalue.StackCache
	// The direct decoder's (direct_linux.go): the plans of the frames
	// traced, by PC, and the types they read, as it reads them.
	plans  map[uint64]*framePlan
	dtypes map[godwarf.Type]*dtype
	ifaces map[uint64]ifaceType
	slab   varSlab
	// gLayout is where the goroutine's id is (see goid).
	gLayout gLayout
	direct  directStats
	// warmed says Delve's module data was read for this process (see
	// warmModuleData).
	warmed bool
	// hs is the scope of the hit being decoded, scopeOf its get, and fns
	// the funcs capture hands Delve's converter (see hitScope).
	hs      *hitScope
	scopeOf dlvvalue.Scope
	fns     hitFuncs
	// corruptDirect, set by tests, alters the values of each hit the
	// direct decoder decoded a value of, as a bug of it would: the
	// cross-check with Delve's values must catch it (see capture).
	corruptDirect func(*fleet.Hit)

	// armMu guards the arming of the tracepoints' probes: each one's
	// links (tracepoint.multi, probe.link), disarm, rearm and cleared, and
	// byBucket. It stands apart from mu, which the reader holds while it
	// decodes a hit, at nice 19 and for as long as a busy host makes that
	// last: taking the probes out must never wait for a decode, since the
	// line traps for nothing until they are out (make bench-limits, load
	// 27: a round at 0.28x the untraced requests/s, the service spending
	// 3x its CPU per request in traps). Lock order: mu, then armMu.
	armMu sync.Mutex
	// byBucket finds the tracepoint whose allowance the BPF program says
	// is spent.
	byBucket map[uint32]*tracepoint
	// armDelay, set by tests, holds each attach back, as a loaded kernel
	// does for hundreds of milliseconds (see target.in).
	armDelay time.Duration
	// prepared says the target waits, opened ahead, for a first tracepoint
	// (see Preload), and start is when its process started; both are
	// guarded by executables' lock.
	prepared bool
	start    uint64
}

type tracepoint struct {
	spec   agent.Tracepoint
	file   string
	bucket uint32
	// hasBucket says bucket is the tracepoint's, until it is released.
	hasBucket bool
	probes    []*probe
	// multi holds every probe of the tracepoint where the kernel has
	// uprobe_multi links; otherwise each probe holds its own link.
	multi link.Link
	log   []fleet.LogSegment
	load  proc.LoadConfig
	warm  bool
	// Applied here when the tracepoint has a condition the BPF program
	// does not evaluate: the BPF bucket would count the hits the condition
	// filters out.
	inKernel bool
	limit    agent.TokenBucket
	dropped  uint64
	ringFull uint64 // of dropped, those the full ring buffer refused
	nested   uint64 // of dropped, those that found their CPU's scratch busy
	full     bool   // a plan ran out of ops
	// condUndecided are the PCs where Set could not tell whether the
	// condition reads a part of a value left out: their first hit does.
	condUndecided map[uint64]bool

	// disarm takes the probes out once the allowance is spent, and rearm
	// puts them back (see disarming), then asks whether the line went
	// quiet (settleQuiet); cleared says the tracepoint is
	// released, its probes out for good. The three are the target's
	// armMu's, with the links. Where the limit is applied here, seen
	// counts the hits it met while the probes were in and wasted those it
	// refused after the allowance was spent (the BPF bucket counts them
	// otherwise); uncounted is the estimate of the hits run while the
	// probes were out, for the next hit to report, or a notice once the
	// line is quiet (settleQuiet).
	disarm       agent.Disarm
	rearm        *time.Timer
	cleared      bool
	seen, wasted uint64
	uncounted    agent.Uncounted
	// records counts the records decoded where the limit is applied
	// here: each was a capture (see agent.Disarm.Held).
	records atomic.Uint64
}

type probe struct {
	t      *target
	tp     *tracepoint
	pc     uint64
	cookie uint64
	off    uint64    // the probe's file offset in the executable
	link   link.Link // nil where tp.multi holds it
}

// verifyStacks has every stack read from a target's stack cache read by
// Delve too, a panic if they differ (which decoding turns into a fault):
// the package's tests set it.
var verifyStacks = false

func newTarget(pid int, exe string) (*target, error) {
	x, snap, tgt, err := openShared(pid, exe)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*target, error) {
		snap.Close()
		x.release()
		return nil, err
	}
	coll, err := loadCollection(x.events)
	if err != nil {
		return fail(err)
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		coll.Close()
		return fail(fmt.Errorf("opening %s: %w", exe, err))
	}
	counts, err := mapBuckets(coll.Maps["buckets"])
	if err != nil {
		coll.Close()
		return fail(err)
	}
	spent, err := ringbuf.NewReader(coll.Maps["spent"])
	if err != nil {
		counts.unmap()
		coll.Close()
		return fail(fmt.Errorf("opening the ring buffer of spent allowances: %w", err))
	}
	// Non-blocking, so that watch waits for it in the runtime's poller.
	pidfd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		spent.Close()
		counts.unmap()
		coll.Close()
		return fail(fmt.Errorf("watching pid %d: %w", pid, err))
	}
	t := &target{
		pid: pid, exe: exe,
		hits:     make(chan agent.Hit, 1024),
		coll:     coll,
		counts:   counts,
		ex:       ex,
		pidfd:    pidfd,
		spent:    spent,
		closed:   make(chan struct{}),
		done:     make(chan struct{}),
		tps:      make(map[string]*tracepoint),
		byBucket: make(map[uint32]*tracepoint),
		mu:       &x.mu,
		x:        x,
		snap:     snap,
		tgt:      tgt,
		di:       x.di,
	}
	t.stacks.Verify = verifyStacks
	x.mu.Lock()
	x.targets[t] = true
	x.mu.Unlock()
	go t.watch()
	go t.disarming()
	return t, nil
}

func (t *target) Hits() <-chan agent.Hit { return t.hits }

// Set installs spec. A spec with the ID of an installed tracepoint replaces
// it, as Delve's backend does, but only once the new one is in place: until
// then the old one keeps its probes, bucket and counters, and if the new one
// fails, Set returns the error with the old one still installed and hitting.
func (t *target) Set(ctx context.Context, spec agent.Tracepoint) (agent.Placement, error) {
	// Read before the lock, which the decoder needs: a measurement under
	// way (an agent traced at once, its first tens of milliseconds) is
	// waited for.
	cost := hitCost()
	t.mu.Lock()
	defer t.unlock()
	if t.ended || t.exitErr != nil {
		return agent.Placement{}, t.gone()
	}
	if spec.HitCondition != "" {
		return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: the eBPF backend has no hit conditions; use the delve backend for it", spec.ID)
	}
	// Delve's backend refuses a condition that does not parse when it is
	// set; so does this one, rather than fault at the first hit.
	if spec.Condition != "" {
		if _, err := parser.ParseExpr(spec.Condition); err != nil {
			return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: condition %q is not a Go expression: %v", spec.ID, spec.Condition, err)
		}
	}
	file, err := agent.ResolveFile(t.snap.BinInfo().Sources, spec.Location)
	if err != nil {
		return agent.Placement{}, err
	}
	logSegs, err := fleet.ParseLogMessage(spec.LogMessage)
	if err != nil {
		return agent.Placement{}, err
	}
	pcs, err := proc.FindFileLocation(t.snap, file, spec.Location.Line)
	if err != nil {
		var nf *proc.ErrCouldNotFindLine
		if errors.As(err, &nf) {
			return agent.Placement{}, fleet.Errorf(fleet.CodeNoCode, "%s:%d has no code in %s: the compiler emitted no instructions for that line (a comment, a blank line, a declaration, or code optimized away); pick a line with a statement", file, spec.Location.Line, exeName(t.pid))
		}
		return agent.Placement{}, fleet.Errorf(fleet.CodeInternal, "finding the code of %s:%d: %v", file, spec.Location.Line, err)
	}
	tp := &tracepoint{spec: spec, file: file, log: logSegs, load: dlvvalue.LoadConfig(spec.Capture)}
	frames := spec.Capture.StackDepth + 2
	if frames > maxFrames {
		frames = maxFrames
	}
	// Each probe goes where, in its copy of the line, what the spec needs
	// is readable (see siteFor).
	needed := neededNames(spec)
	var probeWhy string
	for i, pc := range pcs {
		s := t.siteFor(pc, file, spec.Location.Line, needed)
		pcs[i] = s.pc
		if probeWhy == "" {
			probeWhy = s.describe(filepath.Base(file), spec.Location.Line)
		}
	}
	// A condition that reads a part of a value left out at a PC would be
	// decided on a zero there: refused now, or at the first hit where
	// DWARF alone cannot tell.
	undecided, err := dlvvalue.DroppedInCondition(t.snap.BinInfo(), pcs, spec.Condition)
	if err != nil {
		return agent.Placement{}, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s: %v", spec.ID, err)
	}
	tp.condUndecided = undecided
	plans := make([]bpfPlan, len(pcs))
	// A condition the BPF program evaluates at every PC filters hits
	// before the rate limit there; any other is evaluated here, and the
	// limit applied after it.
	inKernel := true
	for i, pc := range pcs {
		pl := &planner{bi: t.snap.BinInfo(), di: t.di, capture: spec.Capture, cond: spec.Condition}
		plan, err := pl.plan(pc, spec.Location.Line)
		if err != nil {
			return agent.Placement{}, fleet.Errorf(fleet.CodeInternal, "planning the capture at %s:%d (pc %#x): %v", file, spec.Location.Line, pc, err)
		}
		tp.full = tp.full || pl.full
		inKernel = inKernel && (spec.Condition == "" || plan.Cond.Op != condNone)
		plan.Frames = uint32(frames)
		plans[i] = plan
	}
	tp.inKernel = inKernel
	tp.disarm.HitCost = cost
	tp.disarm.CPU = uprobes.ProcessCPU(t.pid)
	tp.disarm.Sched = uprobes.ThreadSched(t.pid)
	if !inKernel {
		tp.limit.Init(maxHitsPerSecond(spec))
		// Every hit is a capture, the condition's and the limit's
		// refusals too: the estimate leaves them out at that cost (none
		// where the cost is unknown).
		if c := tp.disarm.HitCost; c > 0 {
			tp.disarm.Held = func() time.Duration { return time.Duration(tp.records.Load()) * c }
		}
	}
	// The new tracepoint takes its own bucket and plan slots, never the
	// old one's, and its cookies have a new generation: the old one's
	// records still in the ring buffer cannot pass for the new one's.
	if err := t.install(tp, pcs, plans); err != nil {
		t.release(tp)
		return agent.Placement{}, err
	}
	if old := t.tps[spec.ID]; old != nil {
		t.clear(old)
	}
	t.tps[spec.ID] = tp
	pl := agent.Placement{Pid: t.pid, File: file, Line: spec.Location.Line, PCs: pcs, ProbeWhy: probeWhy}
	if fn := t.snap.BinInfo().PCToFunc(pcs[0]); fn != nil {
		pl.Function = fn.Name
	}
	return pl, nil
}

// install takes a bucket and plan slots for tp and attaches its probes, one
// per PC. On error, what it took is in tp for release to give back. Lock
// should be held.
func (t *target) install(tp *tracepoint, pcs []uint64, plans []bpfPlan) error {
	bk, err := t.allocBucket(tp.spec, tp.inKernel)
	if err != nil {
		return err
	}
	tp.bucket, tp.hasBucket = bk, true
	for i, pc := range pcs {
		plan := plans[i]
		plan.Bucket = bk
		slot, err := t.allocPlan()
		if err != nil {
			return err
		}
		if err := t.coll.Maps["plans"].Put(slot, &plan); err != nil {
			t.freePlan = append(t.freePlan, slot)
			return fleet.Errorf(fleet.CodeInternal, "storing the capture plan: %v", err)
		}
		off, err := uprobes.FileOffset(t.exe, pc, t.snap.BinInfo().Images[0].StaticBase)
		if err != nil {
			t.freePlan = append(t.freePlan, slot)
			return fleet.Errorf(fleet.CodeInternal, "placing a uprobe at pc %#x: %v", pc, err)
		}
		// The cookie's low half picks the plan slot; its high half counts
		// the probes attached, so that records of a probe cleared a moment
		// ago and still in the ring buffer never pass for those of a new
		// probe on the same slot.
		t.x.cookieGen++
		p := &probe{t: t, tp: tp, pc: pc, off: off, cookie: uint64(t.x.cookieGen)<<32 | uint64(slot)}
		tp.probes = append(tp.probes, p)
		t.x.byCookie[p.cookie] = p
	}
	t.armMu.Lock()
	defer t.armMu.Unlock()
	if tp.inKernel && tp.spec.Limits.MaxHitsPerSecond > 0 {
		t.byBucket[bk] = tp
	}
	tp.disarm.Armed(time.Now())
	if err := t.arm(tp); err != nil {
		return err
	}
	t.in(tp)
	return nil
}

// arm attaches tp's probes. On error, the links it made are in tp for
// release to close. armMu should be held.
func (t *target) arm(tp *tracepoint) error {
	file, line := tp.file, tp.spec.Location.Line
	if t.armDelay > 0 {
		time.Sleep(t.armDelay)
	}
	if !haveUprobeMulti() {
		for _, p := range tp.probes {
			fn := t.snap.BinInfo().PCToFunc(p.pc)
			sym := "riptrace"
			if fn != nil {
				sym = fn.Name
			}
			l, err := t.ex.Uprobe(sym, t.coll.Programs["capture"], &link.UprobeOptions{Address: p.off, PID: t.pid, Cookie: p.cookie})
			if err != nil {
				return attachError(file, line, p.pc, err)
			}
			p.link = l
		}
		return nil
	}
	offs := make([]uint64, len(tp.probes))
	cookies := make([]uint64, len(tp.probes))
	for i, p := range tp.probes {
		offs[i], cookies[i] = p.off, p.cookie
	}
	l, err := t.ex.UprobeMulti(nil, t.coll.Programs["capture"], &link.UprobeMultiOptions{Addresses: offs, Cookies: cookies, PID: uint32(t.pid)})
	if err != nil {
		return attachError(file, line, tp.probes[0].pc, err)
	}
	tp.multi = l
	return nil
}

// in starts tp's window once its probes are in: at their first hit, or
// at the return of the attach that put them in (which on a loaded host
// takes hundreds of milliseconds, the first hit often well before it). The
// estimate of the hits run while the probes were out goes on until then
// (see agent.Disarm.In); the hits the probes met meanwhile are in the
// bucket's counts. Lock and armMu should be held.
func (t *target) in(tp *tracepoint) {
	var b bpfBucket
	err := t.coll.Maps["buckets"].Lookup(tp.bucket, &b)
	at := time.Now()
	if err == nil && b.First != 0 {
		// A MonoClock of its own: the reader's is the reader's alone,
		// and this runs beside it (once an arming).
		var mono uprobes.MonoClock
		if first := time.Unix(0, int64(b.First)+mono.WallMinusMono()); first.Before(at) {
			at = first
		}
	}
	tp.uncounted.Add(tp.disarm.In(at))
}

// unarm takes tp's links out of it, for the caller to close. The target's
// armMu should be held.
func (tp *tracepoint) unarm() []link.Link {
	var ls []link.Link
	if tp.multi != nil {
		ls = append(ls, tp.multi)
		tp.multi = nil
	}
	for _, p := range tp.probes {
		if p.link != nil {
			ls = append(ls, p.link)
			p.link = nil
		}
	}
	return ls
}

// disarming takes a tracepoint's probes out when the BPF program says its
// allowance is spent, until the ring buffer of such words is closed.
//
// Taking the probes out is the point of the rate limit: a hit the bucket
// refuses still costs the traced thread a trap, and a hot line traps a few
// hundred thousand times a second (make bench-limits: 0.29x the untraced
// requests/s with the probes left in). So the program says at once, with a
// forced wake-up, when an arming's allowance is spent, and this goroutine,
// which does nothing else, unlinks the probes; the traps between the two
// are counted (wasted) and make the estimate of what runs while they are
// out. The timer of agent.Disarm puts them back.
//
// It runs on a thread of its own at raised priority where the agent may
// raise it (CAP_SYS_NICE): on a busy host a thread at the agent's own
// priority woke milliseconds late, each of them some hundred traps.
func (t *target) disarming() {
	runtime.LockOSThread()
	// Left locked: the thread ends with this goroutine, at its priority.
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), disarmNice)
	var rec ringbuf.Record
	for {
		if err := t.spent.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		if len(rec.RawSample) < 16 {
			continue
		}
		bk := binary.LittleEndian.Uint32(rec.RawSample)
		wallMinusMono := t.mono.WallMinusMono()
		at := time.Unix(0, int64(binary.LittleEndian.Uint64(rec.RawSample[8:]))+wallMinusMono)
		var first time.Time
		if len(rec.RawSample) >= 24 {
			if ns := binary.LittleEndian.Uint64(rec.RawSample[16:]); ns != 0 {
				first = time.Unix(0, int64(ns)+wallMinusMono)
			}
		}
		t.armMu.Lock()
		tp := t.byBucket[bk]
		t.armMu.Unlock()
		if tp != nil {
			t.takeOut(tp, first, at)
		}
	}
}

// disarmNice is the nice value of the thread that takes probes out.
const disarmNice = -10

// takeOut unlinks tp's probes, its allowance spent at at, and sets the
// timer that puts them back a window after first, the first hit its
// limit met (zero: told already). It takes armMu alone: see target.
func (t *target) takeOut(tp *tracepoint, first, at time.Time) {
	t.armMu.Lock()
	if tp.cleared || tp.disarm.IsOut() {
		t.armMu.Unlock()
		return
	}
	if !first.IsZero() {
		tp.disarm.Hit(first)
	}
	tp.disarm.Spend(at)
	if tp.rearm != nil {
		tp.rearm.Stop() // asking whether the line went quiet
	}
	ls := tp.unarm()
	back := tp.disarm.Out(time.Now())
	t.armMu.Unlock()
	// Closed before the timer is set: a probe put back while its old link
	// is still being removed would trap twice. The kernel takes the
	// breakpoints out first, then waits for a grace period.
	for _, l := range ls {
		l.Close()
	}
	t.armMu.Lock()
	defer t.armMu.Unlock()
	tp.disarm.ThreadsOut()
	if tp.cleared {
		return
	}
	tp.rearm = time.AfterFunc(time.Until(back), func() { t.putBack(tp) })
}

// putBack links tp's probes again for a new window, with the estimate of
// the hits that ran while they were out for its next hit to report.
func (t *target) putBack(tp *tracepoint) {
	t.mu.Lock()
	defer t.unlock()
	if t.ended || t.tps[tp.spec.ID] != tp {
		return
	}
	t.armMu.Lock()
	out := !tp.cleared && tp.disarm.IsOut()
	t.armMu.Unlock()
	if !out {
		return
	}
	// The counts of the arming are read and zeroed in two steps, which
	// lose nothing: the probes are out, their links closed (which waits
	// for any run of the program), so that nothing adds to them between.
	var b bpfBucket
	err := t.coll.Maps["buckets"].Lookup(tp.bucket, &b)
	seen, wasted := b.Seen, b.Wasted
	if err == nil {
		b.Spent, b.Wasted, b.Seen, b.First = 0, 0, 0, 0
		err = t.coll.Maps["buckets"].Update(tp.bucket, &b, ebpf.UpdateExist)
	}
	if err != nil {
		t.fail(tp, fleet.Errorf(fleet.CodeInternal, "putting back the probes of tracepoint %s on pid %d: reading its rate limit: %v; the tracepoint was removed (please report it)", tp.spec.ID, t.pid, err))
		return
	}
	if !tp.inKernel {
		seen, wasted = tp.seen, tp.wasted
		tp.seen, tp.wasted = 0, 0
	}
	// Under mu, nothing but this timer puts the probes back, and
	// release is not under way: they are still out.
	t.armMu.Lock()
	tp.uncounted.Add(tp.disarm.Rearm(time.Now(), seen, wasted))
	err = t.arm(tp)
	if err == nil {
		t.in(tp)
		t.askQuiet(tp, tp.disarm.QuietAt())
	}
	t.armMu.Unlock()
	if err != nil {
		t.fail(tp, fleet.AsError(err))
	}
}

// askQuiet has settleQuiet ask at at whether tp's line went quiet since
// its probes went back in. armMu should be held.
func (t *target) askQuiet(tp *tracepoint, at time.Time) {
	tp.rearm = time.AfterFunc(time.Until(at), func() { t.settleQuiet(tp) })
}

// quietRetry is how long settleQuiet waits for the reader to decode the
// records it finds waiting before it asks again.
const quietRetry = 10 * time.Millisecond

// settleQuiet tells, in a notice, what tp owes its next hit once its line
// has had none since the probes went back in for longer than the last
// estimate allows (agent.Disarm.Quiet): the drops counted before they came
// out, and that the estimate of the hits run while they were out is
// withdrawn. Those waited for a hit that may not come for long (a burst
// that ended while the probes were out), the status saying less
// meanwhile. It asks once the reader has decoded every record captured
// until then: one of a hit may wait in the ring buffer.
func (t *target) settleQuiet(tp *tracepoint) {
	t.armMu.Lock()
	at := tp.disarm.QuietAt()
	t.armMu.Unlock()
	if !t.x.decodedUntil(at) {
		t.armMu.Lock()
		if !tp.cleared && tp.disarm.Asking() {
			t.askQuiet(tp, time.Now().Add(quietRetry))
		}
		t.armMu.Unlock()
		return
	}
	t.mu.Lock()
	if t.ended || t.tps[tp.spec.ID] != tp {
		t.unlock()
		return
	}
	t.armMu.Lock()
	quiet := !tp.cleared && tp.disarm.Quiet(time.Now(), &tp.uncounted)
	if !quiet && !tp.cleared && tp.disarm.Asking() {
		t.askQuiet(tp, tp.disarm.QuietAt())
	}
	backedOff := tp.disarm.BackedOff(tp.spec.Limits.MaxHitsPerSecond)
	t.armMu.Unlock()
	if !quiet {
		t.unlock()
		return
	}
	n := t.dropsNotice(tp)
	n.Uncounted, n.Rearm = tp.uncounted, backedOff
	tp.uncounted = agent.Uncounted{}
	t.unlock()
	if n.Dropped > 0 || n.Uncounted.Any() {
		t.send(n)
	}
}

// fail removes tp and tells the agent why, from a goroutine of its own: the
// hit channel may be full. Lock should be held.
func (t *target) fail(tp *tracepoint, e *fleet.Error) {
	t.clear(tp)
	go t.send(agent.Hit{Hit: fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid}, Fault: e})
}

// attachError says why the kernel refused a uprobe at pc.
func attachError(file string, line int, pc uint64, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return fleet.Errorf(fleet.CodeAttach, "attaching a uprobe at %s:%d (pc %#x): %v: the kernel refused the agent a uprobe; give it CAP_PERFMON and CAP_BPF, and where the kernel asks for more (seen on 6.18 with perf_event_paranoid=2) CAP_SYS_ADMIN, or trace with --backend delve (auto falls back to it)", file, line, pc, err)
	}
	return fleet.Errorf(fleet.CodeAttach, "attaching a uprobe at %s:%d (pc %#x): %v", file, line, pc, err)
}

func maxHitsPerSecond(spec agent.Tracepoint) int {
	return spec.Limits.MaxHitsPerSecond
}

// allocBucket takes a bucket slot for spec's rate limit. Lock should be held.
func (t *target) allocBucket(spec agent.Tracepoint, inKernel bool) (uint32, error) {
	slot := -1
	for i, used := range t.buckets {
		if !used {
			slot = i
			break
		}
	}
	if slot < 0 {
		if len(t.buckets) == int(t.coll.Maps["buckets"].MaxEntries()) {
			return 0, fleet.Errorf(fleet.CodeInternal, "too many tracepoints in pid %d: clear some", t.pid)
		}
		t.buckets = append(t.buckets, false)
		slot = len(t.buckets) - 1
	}
	t.buckets[slot] = true
	b := bpfBucket{}
	if inKernel && spec.Limits.MaxHitsPerSecond > 0 {
		b.Rate = uint64(spec.Limits.MaxHitsPerSecond)
		b.Disarm = 1
	}
	if err := t.coll.Maps["buckets"].Put(uint32(slot), &b); err != nil {
		t.buckets[slot] = false
		return 0, fleet.Errorf(fleet.CodeInternal, "storing the rate limit: %v", err)
	}
	return uint32(slot), nil
}

// allocPlan takes a plan slot. Lock should be held.
func (t *target) allocPlan() (uint32, error) {
	if n := len(t.freePlan); n > 0 {
		s := t.freePlan[n-1]
		t.freePlan = t.freePlan[:n-1]
		return s, nil
	}
	if t.nextPlan == t.coll.Maps["plans"].MaxEntries() {
		return 0, fleet.Errorf(fleet.CodeInternal, "too many probes in pid %d: all %d are in use; clear some tracepoints", t.pid, t.nextPlan)
	}
	t.nextPlan++
	return t.nextPlan - 1, nil
}

func (t *target) Clear(ctx context.Context, id string) error {
	t.mu.Lock()
	defer t.unlock()
	if tp := t.tps[id]; tp != nil {
		t.clear(tp)
	}
	return nil
}

// clear removes tp, its probes and its slots. Lock should be held.
func (t *target) clear(tp *tracepoint) {
	t.release(tp)
	if t.tps[tp.spec.ID] == tp {
		delete(t.tps, tp.spec.ID)
	}
}

// release detaches tp's probes and gives back its bucket and plan slots;
// records of its probes still in the ring buffer are skipped from now on.
// Lock should be held.
func (t *target) release(tp *tracepoint) {
	t.armMu.Lock()
	tp.cleared = true
	t.x.unlinked = append(t.x.unlinked, tp.unarm()...)
	if tp.rearm != nil {
		tp.rearm.Stop()
	}
	if tp.hasBucket && t.byBucket[tp.bucket] == tp {
		delete(t.byBucket, tp.bucket)
	}
	t.armMu.Unlock()
	for _, p := range tp.probes {
		delete(t.x.byCookie, p.cookie)
		t.freePlan = append(t.freePlan, uint32(p.cookie))
	}
	tp.probes = nil
	if tp.hasBucket {
		t.buckets[tp.bucket] = false
		tp.hasBucket = false
	}
}

// unlock releases the lock (see executable.unlock).
func (t *target) unlock() { t.x.unlock() }

// Detach removes every probe and frees the program, dropping the hits not
// yet read from the ring buffer. If the process had exited, it returns
// agent.ErrProcessExited.
func (t *target) Detach(ctx context.Context) error {
	t.close(nil)
	select {
	case <-t.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.exitErr
}

// close removes every probe and ends the reader; exitErr says why, if the
// process ended.
func (t *target) close(exitErr error) {
	t.mu.Lock()
	defer t.unlock()
	if t.ended {
		return
	}
	t.ended = true
	if exitErr != nil {
		t.exitErr = exitErr
	}
	for _, tp := range t.tps {
		t.clear(tp)
	}
	delete(t.x.targets, t)
	close(t.closed)
	t.spent.Close()
	go t.teardown()
}

// teardown closes hits once the reader no longer sends on it, and frees the
// program, the maps and the target's hold on its executable.
func (t *target) teardown() {
	defer close(t.done)
	t.sendMu.Lock()
	t.sent = true
	close(t.hits)
	t.sendMu.Unlock()
	t.counts.unmap()
	t.coll.Close()
	t.snap.Close()
	t.x.releaseTarget(t)
}

// send hands h to the agent, unless the target is closed meanwhile. It
// is counted in transit before it leaves: the reader stops holding it
// back (Holding) once it is sent, and the agent starts only once it has
// received it.
func (t *target) send(h agent.Hit) {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	if t.sent {
		return
	}
	out := t.out
	if out == nil {
		out = t.hits
	}
	tr := t.transit.Load()
	tr.Sending(h.Time)
	select {
	case out <- h:
	case <-t.closed:
		tr.Dropped()
	}
}

// DeliverTo sends the hits from now on to ch (see agent.Deliverer).
func (t *target) DeliverTo(ch chan<- agent.Hit) {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	t.out = ch
}

// Follow counts the hits sent on tr (see agent.Transit).
func (t *target) Follow(tr *agent.Transit) { t.transit.Store(tr) }

func (t *target) gone() error {
	if t.exitErr != nil {
		return t.exitErr
	}
	return fmt.Errorf("pid %d is detached", t.pid)
}

// watch waits for the process to exit, then has read deliver what is left
// in the ring buffer before it closes the target.
func (t *target) watch() {
	if !t.awaitExit() {
		return
	}
	t.mu.Lock()
	if !t.ended {
		t.exitErr = agent.ErrProcessExited{Pid: t.pid, Status: 0}
	}
	t.mu.Unlock()
	// Every thread is gone, so every record the process will ever make is
	// in the ring buffer: the reader decodes them all, then closes the
	// target when it reads ErrFlushed.
	t.x.rb.Flush()
}

// awaitExit waits until the process exits (true) or the target is closed
// (false), and closes the pidfd.
//
// The pidfd waits in the runtime's network poller, as a socket does, with
// no thread blocked on it. It was polled by a thread of its own, which woke
// each 200 ms to see whether the target was closed: each wake-up of a
// thread from a system call has the runtime's sysmon thread poll for the
// next 10 ms, 60 sleeps of 20 µs and more, and on make bench's set-up that
// was a quarter of an idle agent's CPU.
func (t *target) awaitExit() bool {
	f := os.NewFile(uintptr(t.pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return t.pollExit()
	}
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		select {
		case <-t.closed:
			f.SetReadDeadline(time.Now()) // ends the wait below
		case <-exited:
		}
	}()
	var gone bool
	var pollErr error
	err = rc.Read(func(fd uintptr) bool {
		gone, pollErr = pidfdReadable(int(fd), 0)
		return gone || pollErr != nil
	})
	switch {
	case gone:
		return true
	case pollErr != nil || errors.Is(err, os.ErrDeadlineExceeded):
		return false
	}
	// Not in the poller (the fd is not pollable there): poll it here.
	return t.pollExit()
}

// pollExit is awaitExit for a pidfd the runtime cannot poll: it polls it
// every 200 ms.
func (t *target) pollExit() bool {
	for {
		select {
		case <-t.closed:
			return false
		default:
		}
		if gone, err := pidfdReadable(t.pidfd, 200); gone || err != nil {
			return gone
		}
	}
}

// pidfdReadable reports whether pidfd's process has exited, waiting up to
// timeout ms for it; an interrupted wait is no error.
func pidfdReadable(pidfd, timeout int) (bool, error) {
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, timeout)
	if err != nil && err != unix.EINTR {
		return false, err
	}
	return n > 0, nil
}

// read decodes records until the ring buffer is closed, and closes each
// exited process's target once every record it made is decoded.
//
// It waits for records at the agent's own priority: waiting costs nothing,
// and a niced thread on a busy host wakes seconds late. A burst on time is
// decoded on the niced thread. A record that has waited over lagBound (the
// host is too busy for the niced thread: at nice 19 against a busy loop a
// thread has about 1.5% of a CPU, and one decode can take a second) is
// decoded here, and so is every record for a while after (prompt, from 1 s,
// doubling while the host stays busy up to 16 s).
func (x *executable) read() {
	defer close(x.done)
	niced := startNiced()
	defer niced.stop()
	check := time.NewTicker(lagCheck)
	defer check.Stop()
	var r readLoop
	for {
		s := x.next(&r)
		if s == readOnTime {
			if !r.batch {
				r.held = x.awaitGap()
				r.batch = true
			}
			if time.Now().Before(r.promptUntil) {
				s = readLate
			} else {
				var hurry atomic.Bool
				allow := lagBound + r.held // read before the niced thread may change r
				if j := niced.start(func() readState { return x.burst(&r, &hurry) }); j != nil {
					s = x.await(allow, j, &hurry, check)
				} else {
					hurry.Store(true)
					s = readLate
				}
				r.hurried(hurry.Load())
			}
		}
		switch s {
		case readClosed:
			return
		case readLate:
			x.finish(&r)
		}
	}
}

// How long the reader decodes at its own priority after the niced thread
// fell behind.
const (
	promptMin = time.Second
	promptMax = 16 * time.Second
)

// hurried notes whether the niced thread had to be hurried in its last
// burst.
func (r *readLoop) hurried(yes bool) {
	if !yes {
		r.prompt = 0
		return
	}
	r.prompt = min(max(2*r.prompt, promptMin), promptMax)
	r.promptUntil = time.Now().Add(r.prompt)
}

// readLoop is the state read keeps between records.
type readLoop struct {
	rec      ringbuf.Record
	captured int64 // the capture time of the record in rec (wall, ns)
	readAt   int64 // when it was read (wall, ns): finish's now too, but for a batch's first
	// out are the hits decoded and not sent yet, oldest first, and
	// outSince when the first of them was decoded (see finish).
	out         []sendHit
	outSince    int64
	batch       bool          // records are being decoded one after another
	held        time.Duration // how long awaitGap held the batch
	prompt      time.Duration // the last prompt period, 0 after a burst on time
	promptUntil time.Time     // decode at the agent's priority until then
}

// sendHit is a hit decoded for target t.
type sendHit struct {
	t *target
	h agent.Hit
}

// How many hits the reader decodes before it sends them, at most, and for
// how long. Sent one by one as decoded, each woke the agent's goroutines
// that pass it on, one after another, and each went to NATS alone: the
// scheduler's work for those wake-ups was a quarter of the agent's CPU per
// hit on make bench's hot loop. Sent together, back to back, one
// wake-up takes them all, and the outbox sends them in few messages. A hit
// is never held for the next: whatever is decoded goes once the ring buffer
// is empty. In a burst, sendHold is what sends them, as a millisecond
// decodes 200-300 hits: with sendBatch at 32, the agent's context switches
// and futex calls over 30k hits of the hot loop were 1.4x and 1.5x what
// they were at 256, its CPU 1.09x (medians of 6 alternated runs). Each
// send still wakes the chain (the agent's pump, the outbox, nats.go's
// flusher, the ack back), hundreds of µs on a VM: at 2048 hits and 8 ms,
// make bench-agent read the agent's CPU per hit 1.23x and 1.32x lower than
// at 256 and 1 ms (medians of 8 alternated runs each; 1.12-1.17x at 1024
// and 4 ms). A batch larger than the target's channel (1024) blocks the
// decoding thread until the pump has taken its first part: nothing is
// lost, and the pump is awake for the rest. The hits held count in
// Holding, and their wait in lagBound: once held so long, the reader
// hurries the niced thread as before; that begins after about 42 ms of
// backlog instead of 49.
const (
	sendBatch = 2048
	sendHold  = 8 * time.Millisecond
)

// flush sends the hits decoded so far.
func (r *readLoop) flush() {
	for i := range r.out {
		r.out[i].t.send(r.out[i].h)
		r.out[i] = sendHit{}
	}
	r.out = r.out[:0]
}

// late reports whether a record captured at captured (wall, ns) and read
// now waited longer than lagBound beyond the batch's deliberate hold.
func (r *readLoop) late(captured int64) bool {
	return r.readAt-captured > int64(lagBound+r.held)
}

// readState says what the reader read last.
type readState int

const (
	readNone   readState = iota // no record: the ring buffer was flushed
	readOnTime                  // a record not yet decoded, in time
	readLate                    // a record not yet decoded, to decode at once: it waited over lagBound
	readClosed                  // the ring buffer is closed
)

// next waits for the next record and reads it into r.rec.
func (x *executable) next(r *readLoop) readState {
	if err := x.rb.ReadInto(&r.rec); err != nil {
		// No hit waits for more records: finish sent them when it left
		// the ring buffer empty, and this is for the rest.
		r.flush()
		if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return readClosed
		}
		if errors.Is(err, ringbuf.ErrFlushed) {
			// Drained: the probes of an exited process went with it,
			// but our links and program are freed here.
			x.mu.Lock()
			var exited []*target
			for t := range x.targets {
				if t.exitErr != nil && !t.ended {
					exited = append(exited, t)
				}
			}
			x.mu.Unlock()
			for _, t := range exited {
				t.close(t.exitErr)
			}
		}
		return readNone
	}
	raw := r.rec.RawSample
	if len(raw) < 16 {
		return readOnTime // decode skips it
	}
	// This record is the oldest not yet delivered: the ones before it
	// have left, the ones after it are newer.
	ktime := int64(binary.LittleEndian.Uint64(raw[8:]))
	wallMinusMono, _ := x.mono.At(ktime)
	captured := ktime + wallMinusMono
	r.captured, r.readAt = captured, time.Now().UnixNano()
	if len(r.out) == 0 {
		// Else the oldest of those not sent yet holds, since it was read.
		x.holding.Store(captured)
	}
	if r.late(captured) {
		return readLate
	}
	return readOnTime
}

// burst decodes the record in r.rec, on time, and those after it while
// they are there, on time, and nobody is in a hurry. It returns the state
// of the last record read, which is left for read to decode (readLate)
// when it is late or read is in a hurry.
func (x *executable) burst(r *readLoop, hurry *atomic.Bool) readState {
	defer r.flush()
	for s := readOnTime; ; s = x.next(r) {
		switch {
		case s == readNone:
		case s != readOnTime:
			return s
		case hurry.Load():
			return readLate
		default:
			x.finish(r)
		}
		if x.pending() <= 0 {
			return readNone
		}
	}
}

// await waits for the niced thread's burst j to end. Once the record it
// decodes has waited over allow, it takes j back if the thread has not
// begun it (the record is left for read to decode), or hurries it.
func (x *executable) await(allow time.Duration, j *nicedJob, hurry *atomic.Bool, check *time.Ticker) readState {
	check.Reset(lagCheck)
	for {
		select {
		case s := <-j.done:
			return s
		case <-check.C:
			if h := x.holding.Load(); h != 0 && time.Now().UnixNano()-h > int64(allow) {
				hurry.Store(true)
				if j.takeBack() {
					return readLate
				}
			}
		}
	}
}

// finish decodes the record in r.rec, sends the hits decoded so far when
// the ring buffer is left empty or they are sendBatch or have waited
// sendHold, and notes when the ring buffer is left empty.
func (x *executable) finish(r *readLoop) {
	if t, h, ok := x.decode(r.rec.RawSample); ok {
		if len(r.out) == 0 {
			// Not readAt: the batch's first record was read before
			// awaitGap held it.
			r.outSince = time.Now().UnixNano()
		}
		r.out = append(r.out, sendHit{t, h})
	}
	r.batch = x.pending() > 0
	if !r.batch || len(r.out) >= sendBatch || len(r.out) > 0 && r.readAt-r.outSince >= int64(sendHold) {
		r.flush()
	}
	if !r.batch {
		r.held = 0
		x.emptyAt.Store(time.Now().UnixNano())
		x.holding.Store(0)
		x.sweepDrops()
	}
}

// decodedUntil reports whether the reader has decoded every record of a
// hit captured until at: it holds a hit captured after (and delivered
// those before), or left the ring buffer empty after at's records were
// committed, or has nothing to read. The ring buffer is the executable's:
// a hot line of another of its processes may keep records coming, and
// the reader is never idle then.
func (x *executable) decodedUntil(at time.Time) bool {
	after := at.Add(recordSlack).UnixNano()
	if h := x.holding.Load(); h != 0 {
		return h > after
	}
	return x.pending() <= 0 || x.emptyAt.Load() > after
}

// Holding returns the capture time (wall clock, ns) of the oldest hit the
// reader holds or decodes and has not delivered yet, 0 if none: the agent's
// watermarks stay before it, so that a burst held for decoding is not late
// in the timeline. The reader is the executable's: what it holds holds back
// the hits of all its processes.
//
// A record not read yet holds back too: with records waiting, the reader
// holds every hit since it last left the ring buffer empty. A record was
// captured at most the BPF program's run before it was committed (1.2 µs
// measured, so recordSlack is ample).
func (t *target) Holding() int64 {
	if h := t.x.holding.Load(); h != 0 {
		// The hit's own time is converted from the kernel's clock again
		// as it is decoded, and the conversion is measured anew each
		// second: a stressed run saw the two differ by 62 ns, and a
		// watermark at this time pass the hit. Held back by recordSlack,
		// the watermark stays before it.
		return h - int64(recordSlack)
	}
	if t.x.pending() > 0 {
		return t.x.emptyAt.Load() - int64(recordSlack)
	}
	return 0
}

// recordSlack bounds how long before its commit a record was captured.
const recordSlack = time.Millisecond

// How the reader waits for a gap in a burst of hits before decoding it.
const (
	burstGap     = 2 * time.Millisecond   // no record for this long: a gap
	burstLookMax = 16 * time.Millisecond  // the longest it looks away in a burst
	burstHold    = 100 * time.Millisecond // the longest a hit waits for one
	// burstFast is what a burstGap's records fill at least when the
	// reader looks less often: 8 KiB, about 10 records of make bench's
	// hot loop (768 bytes each), 5,000 hits a second. A line hit every
	// few ms keeps looks of burstGap, and its first gap of 2 ms is
	// decoded at once.
	burstFast = 8 << 10
)

// awaitGap holds the first record of a batch until records stop coming for
// burstGap, for at most burstHold, or until the ring buffer is half full.
// While records come fast (burstFast) it looks less often: twice as long
// each time, up to burstLookMax, and never longer than half the time the
// ring buffer takes to fill to half at the pace it has been filling. Each
// look is a timer that wakes one of the agent's threads and the runtime's
// sysmon (which sleeps until the next timer once the agent is idle):
// looking every 2 ms through make bench's 90 ms loop was about 45 of each
// a burst. A burst ends up to burstLookMax before the reader sees it has.
// Decoding while the traced code runs hot competes with it, even from
// another CPU: on make bench's hot loop, with the agent stopped during the
// loop a hit cost the loop 1.07-1.09x a bare uprobe, with it decoding
// alongside 1.3-1.6x. A line hit now and then is decoded at once (after
// burstGap); a burst, once it pauses.
//
// It returns how long it held: records held on purpose are not late for it.
func (x *executable) awaitGap() time.Duration {
	start := time.Now()
	half := x.rb.BufferSize() / 2
	last := x.pending()
	look := burstGap
	for deadline := start.Add(burstHold); last >= 0 && last < half; {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		time.Sleep(min(look, left))
		n := x.pending()
		if n == last {
			break
		}
		if grew := n - last; n < half && float64(grew) >= burstFast*float64(look)/float64(burstGap) {
			// Half the time to half full at this pace: the ring buffer
			// overflows in one look only if the pace more than
			// quadruples within it.
			toHalf := time.Duration(float64(look) * float64(half-n) / float64(grew) / 2)
			look = max(burstGap, min(2*look, burstLookMax, toHalf))
		} else {
			look = burstGap
		}
		last = n
	}
	return time.Since(start)
}

// pending returns the bytes waiting in the ring buffer, or -1 once it is
// closed.
func (x *executable) pending() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.rbClosed {
		return -1
	}
	return x.rb.AvailableBytes()
}

const headerSize = 8 + 8 + 8 + 8 + 8 + 4 + 4 + 21*8

// decode turns one record into a hit of the target it is for; ok is false
// for a record to skip (a probe cleared meanwhile, or a condition that does
// not hold).
func (x *executable) decode(raw []byte) (*target, agent.Hit, bool) {
	if len(raw) < headerSize {
		return nil, agent.Hit{}, false
	}
	le := binary.LittleEndian
	cookie := le.Uint64(raw[0:])
	ktime := int64(le.Uint64(raw[8:]))
	dropped := le.Uint64(raw[16:])
	ringFull := le.Uint64(raw[24:])
	nested := le.Uint64(raw[32:])
	tid := int(le.Uint32(raw[40:]))
	size := int(le.Uint32(raw[44:]))
	x.mu.Lock()
	defer x.unlock()
	p := x.byCookie[cookie]
	if p == nil {
		return nil, agent.Hit{}, false
	}
	// struct pt_regs is the start of the ptrace layout, which goes on
	// with the segment bases that a uprobe does not see.
	w := func(i int) uint64 { return le.Uint64(raw[48+8*i:]) }
	regs := &x.regs
	*regs = linutil.AMD64PtraceRegs{
		R15: w(0), R14: w(1), R13: w(2), R12: w(3), Rbp: w(4), Rbx: w(5), R11: w(6), R10: w(7), R9: w(8), R8: w(9),
		Rax: w(10), Rcx: w(11), Rdx: w(12), Rsi: w(13), Rdi: w(14), Orig_rax: w(15), Rip: w(16), Cs: w(17), Eflags: w(18), Rsp: w(19), Ss: w(20),
	}
	regions := x.regions[:0]
	data := raw[headerSize:]
	if size < len(data) {
		data = data[:size]
	}
	for len(data) >= 16 {
		addr := le.Uint64(data)
		n := int(le.Uint32(data[8:]))
		data = data[16:]
		if n > len(data) {
			break
		}
		regions = append(regions, region{addr: addr, data: data[:n:n]})
		data = data[min((n+7)&^7, len(data)):]
	}
	x.regions = regions
	t, tp := p.t, p.tp
	h, ok := t.hit(tp, tid, regs, regions, ktime, dropped, ringFull, nested)
	return t, h, ok
}

// hit decodes a record of tp's. Lock should be held.
func (t *target) hit(tp *tracepoint, tid int, regs *linutil.AMD64PtraceRegs, regions []region, ktime int64, dropped, ringFull, nested uint64) (agent.Hit, bool) {
	// What the kernel dropped before this record is owed to the next hit
	// that leaves, whatever becomes of this one.
	tp.owe(dropped, ringFull, nested)
	if !tp.inKernel {
		tp.records.Add(1)
	}
	t.mem = regionMemory{p: t.snap, regions: regions, misses: t.mem.misses[:0]}
	t.regs = regs
	t.snap.Set(tid, regs, nil, &t.mem)
	t.snap.ClearCaches(t.tgt)
	h, keep, err := t.safeCapture(tp)
	if err != nil {
		t.clear(tp)
		return agent.Hit{Hit: fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid}, Fault: fleet.AsError(err)}, true
	}
	if !keep {
		return agent.Hit{}, false
	}
	wallMinusMono, timeErr := t.x.mono.At(ktime)
	h.Time = ktime + wallMinusMono
	limited := !tp.inKernel && tp.spec.Limits.MaxHitsPerSecond > 0
	t.armMu.Lock()
	out := tp.disarm.IsOut()
	if tp.spec.Limits.MaxHitsPerSecond > 0 {
		tp.disarm.Ran(tid)
		if !out {
			// Limited in the kernel too: the first hit decoded is
			// the first its bucket met (takeOut tells it again, for
			// a window whose hits were not decoded yet), and bears
			// out the last estimate (Vouch).
			tp.disarm.Hit(time.Unix(0, h.Time))
		}
	}
	backedOff := tp.disarm.BackedOff(tp.spec.Limits.MaxHitsPerSecond)
	ready := tp.disarm.Vouch(&tp.uncounted)
	waiting := tp.disarm.Waiting() || !ready
	t.armMu.Unlock()
	if limited && !out {
		tp.seen++
	}
	if !tp.inKernel && !tp.limit.Take(time.Unix(0, h.Time)) {
		tp.dropped++
		if tp.spec.Limits.MaxHitsPerSecond > 0 {
			t.armMu.Lock()
			spent := tp.disarm.Spend(time.Unix(0, h.Time))
			t.armMu.Unlock()
			if spent {
				go t.takeOut(tp, time.Time{}, time.Unix(0, h.Time))
			} else {
				tp.wasted++
			}
		}
		return agent.Hit{}, false
	}
	hit := agent.Hit{Hit: h, Waiting: waiting, Rearm: backedOff, TimeErr: timeErr}
	hit.Dropped, hit.Throttle = tp.settle()
	if ready {
		hit.Uncounted, tp.uncounted = tp.uncounted, agent.Uncounted{}
	}
	return hit, true
}

// owe adds dropped hits the kernel counted, of them full refused by the
// full ring buffer and nested finding their CPU's scratch busy, to what
// the next hit or notice of tp that leaves reports.
func (tp *tracepoint) owe(dropped, full, nested uint64) {
	tp.dropped += dropped
	tp.ringFull += min(full, dropped)
	tp.nested += min(nested, dropped-min(full, dropped))
}

// settle returns the drops tp owes the hit or notice that leaves now, and
// why the kernel dropped them (see throttle), and owes nothing after.
func (tp *tracepoint) settle() (dropped uint64, why string) {
	dropped, why = tp.dropped, throttle(tp.ringFull, tp.nested)
	tp.dropped, tp.ringFull, tp.nested = 0, 0, 0
	return dropped, why
}

// throttle says why the kernel dropped hits, when the tracepoint's rate
// limit was not the reason (agent.Hit.Throttle): ringFull were refused by
// the full ring buffer, nested found their CPU's copy buffer taken by a
// capture that the kernel had preempted (probe.c's capture).
func throttle(ringFull, nested uint64) string {
	const (
		full = "by a full ring buffer: the line ran faster than the agent decodes hits; set maxHitsPerSecond to choose which hits leave"
		nest = "by preemption: a hit arrived while another capture on the same CPU was preempted, and the program copies one hit at a time per CPU"
	)
	switch {
	case ringFull > 0 && nested > 0:
		return full + "; and " + nest
	case ringFull > 0:
		return full
	case nested > 0:
		return nest
	}
	return ""
}

// safeCapture decodes a hit, turning a panic in Delve into an error: the
// tracepoint is then removed, the process runs on, untouched.
func (t *target) safeCapture(tp *tracepoint) (h fleet.Hit, keep bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fleet.Errorf(fleet.CodeInternal, "internal error decoding tracepoint %s on pid %d: %v; the tracepoint was removed (please report it)", tp.spec.ID, t.pid, r)
		}
	}()
	return t.capture(tp)
}

// exeName names pid's executable for messages.
func exeName(pid int) string {
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		return exe
	}
	return fmt.Sprintf("pid %d", pid)
}
