package delve

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/riptrace/riptrace/agent/internal/uprobes"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/go-delve/delve/pkg/proc/linutil"
	"golang.org/x/sys/unix"
)

// A tracepoint's PCs get kernel uprobes, not int3s of ours: the kernel
// owns the probe's breakpoint and removes it when the last file descriptor
// holding the link closes, which a process that dies does too. At each
// probe a small BPF program records the thread's registers, as they are
// before the probed instruction runs, in a map keyed by thread id, and
// sends the thread SIGURG with bpf_send_signal_thread. The worker traces
// every thread with PTRACE_SEIZE, so the thread stops for the signal (one
// instruction later: see the package doc) and the worker captures the hit
// from the recorded registers and the live memory.
//
// SIGURG is the signal the Go runtime itself sends to preempt a goroutine;
// the runtime ignores one it did not ask for. The worker delivers it when
// it resumes the thread (see holdLoop), and a worker that dies leaves at
// most that signal behind.
//
// The program is small enough to write as instructions here, which spares
// the build a C compiler and a committed object.

// sigHit is the signal a probe sends to the thread that hit it.
const sigHit = unix.SIGURG

// hitRecord is the value of the hits map: what the program saw at a probe.
type hitRecord struct {
	Cookie uint64
	Time   uint64 // CLOCK_MONOTONIC ns
	Regs   [21]uint64
	// The memory the probed instruction is about to write, as it was
	// before (see writePlan): MemLen bytes at MemAddr, 0 if the plan says
	// none or the copy failed.
	MemAddr, MemLen uint64
	Mem             [maxWrite]byte
}

const hitRecordSize = 8 + 8 + 21*8 + 8 + 8 + maxWrite

// maxWrite bounds the bytes a probe copies before its instruction writes
// them; a wider write (a vector store, a string instruction) reads as not
// captured.
const maxWrite = 64

// writePlan is the value of the plans map, per probe slot: where the probed
// instruction writes memory, as base register + index register × scale +
// disp (registers as word indexes in struct pt_regs; noReg: none), and how
// many bytes (0: it writes none).
type writePlan struct {
	Size, Disp, Base, Index, Scale uint64
}

const noReg = 255

// maxProbes bounds the probes of one process (the dropped map's size).
const maxProbes = 1024

// probeSet is the BPF program and maps of one process.
type probeSet struct {
	hits    *ebpf.Map // tid → hitRecord
	gate    *ebpf.Map // 0 → a uint64: while not zero (the stop budget is spent), probes count hits in dropped instead of stopping the thread
	dropped counters  // probe slot → hits dropped while the gate was closed
	closed  counters  // probe slot → 0: open; else 1 + the hits refused since the slot was closed (see closeSlot)
	plans   *ebpf.Map // probe slot → writePlan
	prog    *ebpf.Program
	ex      *link.Executable
	exe     string
}

// uprobesAvailable reports whether this host lets this process load the
// probe program and attach it as a uprobe; the error says why not. The
// trial probe goes on this process's own entry point, which has run (by
// address: the executable may have no symbol table).
// (Some kernels want CAP_SYS_ADMIN for a uprobe where CAP_BPF and
// CAP_PERFMON load the program: 6.18 with perf_event_paranoid=2.)
func uprobesAvailable() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the memlock limit for BPF maps: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this executable for a trial uprobe: %w", err)
	}
	ps, err := newProbeSet(exe)
	if err != nil {
		return err
	}
	defer ps.close()
	f, err := elf.Open(exe)
	if err != nil {
		return fmt.Errorf("reading this executable for a trial uprobe: %w", err)
	}
	entry := f.Entry
	f.Close()
	off, err := uprobes.FileOffset(exe, entry, 0)
	if err != nil {
		return fmt.Errorf("placing a trial uprobe: %w", err)
	}
	l, err := ps.uprobe("riptrace_trial", off, os.Getpid(), 0)
	if err != nil {
		return fmt.Errorf("attaching a trial uprobe: %w", err)
	}
	return l.Close()
}

// newProbeSet loads the program and its maps, for probes in exe.
func newProbeSet(exe string) (*probeSet, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the memlock limit for BPF maps: %w", err)
	}
	ps := &probeSet{exe: exe}
	var err error
	ps.hits, err = ebpf.NewMap(&ebpf.MapSpec{Name: "riptrace_hits", Type: ebpf.Hash, KeySize: 4, ValueSize: hitRecordSize, MaxEntries: 16384})
	if err != nil {
		return nil, loadError(err)
	}
	ps.gate, err = ebpf.NewMap(&ebpf.MapSpec{Name: "riptrace_gate", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		ps.close()
		return nil, loadError(err)
	}
	ps.dropped, err = newCounters("riptrace_drop")
	if err != nil {
		ps.close()
		return nil, loadError(err)
	}
	ps.plans, err = ebpf.NewMap(&ebpf.MapSpec{Name: "riptrace_plan", Type: ebpf.Array, KeySize: 4, ValueSize: 40, MaxEntries: maxProbes})
	if err != nil {
		ps.close()
		return nil, loadError(err)
	}
	ps.closed, err = newCounters("riptrace_shut")
	if err != nil {
		ps.close()
		return nil, loadError(err)
	}
	ps.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "riptrace_hit",
		Type:         ebpf.Kprobe,
		AttachType:   uprobeAttachType(),
		License:      "Dual MIT/GPL",
		Instructions: hitProgram(ps.hits.FD(), ps.gate.FD(), ps.dropped.m.FD(), ps.plans.FD(), ps.closed.m.FD()),
	})
	if err != nil {
		ps.close()
		return nil, loadError(err)
	}
	if exe != "" {
		if ps.ex, err = link.OpenExecutable(exe); err != nil {
			ps.close()
			return nil, fmt.Errorf("opening %s: %w", exe, err)
		}
	}
	return ps, nil
}

func loadError(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("loading the uprobe program: %w: run the agent as root, or give it CAP_BPF and CAP_PERFMON", err)
	}
	return fmt.Errorf("loading the uprobe program (the Delve backend's uprobes need Linux 5.15 or later: attach cookies and bpf_send_signal_thread): %w", err)
}

func (ps *probeSet) close() {
	for _, c := range []interface{ Close() error }{ps.prog, ps.hits, ps.gate, ps.plans} {
		if c != nil && !isNilCloser(c) {
			c.Close()
		}
	}
	ps.dropped.close()
	ps.closed.close()
}

// counters is an array map of maxProbes uint64s that the probes add to,
// also mapped into this process so that a count can be taken with an
// atomic swap: a lookup then an update of 0 would lose a hit a probe
// counted in between.
type counters struct {
	m   *ebpf.Map
	mem []byte
}

func newCounters(name string) (counters, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: maxProbes, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		return counters{}, err
	}
	mem, err := unix.Mmap(m.FD(), 0, maxProbes*8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		m.Close()
		return counters{}, fmt.Errorf("mapping %s into memory: %w", name, err)
	}
	return counters{m: m, mem: mem}, nil
}

// at is slot's count, for sync/atomic. The memory is the kernel's, outside
// the Go heap, and stays mapped until close.
func (c counters) at(slot uint32) *uint64 {
	return (*uint64)(unsafe.Pointer(&c.mem[8*(slot%maxProbes)]))
}

func (c counters) close() {
	if c.mem != nil {
		unix.Munmap(c.mem)
	}
	if c.m != nil {
		c.m.Close()
	}
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *ebpf.Map:
		return v == nil
	case *ebpf.Program:
		return v == nil
	}
	return false
}

// hitProgram returns the probe program. In C it would read:
//
//	if (gate[0].closed) { dropped[cookie & 0xffffffff]++; return 0; }
//	if (closed[cookie & 0xffffffff]) { closed[cookie & 0xffffffff]++; return 0; }
//	u32 tid = bpf_get_current_pid_tgid();
//	struct hitRecord r = {bpf_get_attach_cookie(ctx), bpf_ktime_get_ns(), *ctx};
//	struct writePlan *w = &plans[cookie & 0xffffffff];
//	if (w->size > 0 && w->size <= maxWrite) {
//		r.memAddr = regs[w->base] + regs[w->index] * w->scale + w->disp;
//		if (bpf_probe_read_user(r.mem, w->size, r.memAddr) == 0)
//			r.memLen = w->size;
//	}
//	if (bpf_map_update_elem(&hits, &tid, &r, BPF_ANY) == 0)
//		bpf_send_signal_thread(SIGURG);
//	return 0;
func hitProgram(hits, gate, dropped, plans, closed int) asm.Instructions {
	const (
		keyOff  = -4
		slotOff = -8
		recOff  = -8 - hitRecordSize // 8-byte aligned, below the keys
		regsOff = recOff + 16
		addrOff = regsOff + 21*8
		lenOff  = addrOff + 8
		memOff  = lenOff + 8
	)
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx: struct pt_regs *
		// The gate.
		asm.StoreImm(asm.RFP, keyOff, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, gate),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "open"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "open"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetAttachCookie.Call(),
		asm.StoreMem(asm.RFP, keyOff, asm.R0, asm.Word), // the slot: the cookie's low half
		asm.LoadMapPtr(asm.R1, dropped),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Ja.Label("out"),
		// The probe's own gate.
		asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("open"),
		asm.FnGetAttachCookie.Call(),
		asm.StoreMem(asm.RFP, slotOff, asm.R0, asm.Word),
		asm.LoadMapPtr(asm.R1, closed),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, slotOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "record"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "record"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Ja.Label("out"),
		// The record.
		asm.FnGetCurrentPidTgid.Call().WithSymbol("record"),
		asm.StoreMem(asm.RFP, keyOff, asm.R0, asm.Word), // the tid: the low half
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetAttachCookie.Call(),
		asm.StoreMem(asm.RFP, recOff, asm.R0, asm.DWord),
		asm.StoreMem(asm.RFP, slotOff, asm.R0, asm.Word),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, recOff+8, asm.R0, asm.DWord),
	}
	for i := int16(0); i < 21; i++ {
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R6, i*8, asm.DWord),
			asm.StoreMem(asm.RFP, regsOff+i*8, asm.R1, asm.DWord),
		)
	}
	insns = append(insns, asm.Mov.Imm(asm.R1, 0))
	for off := int16(addrOff); off < memOff+maxWrite; off += 8 {
		insns = append(insns, asm.StoreMem(asm.RFP, off, asm.R1, asm.DWord))
	}
	// The memory the instruction will write, before it does.
	insns = append(insns,
		asm.LoadMapPtr(asm.R1, plans),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, slotOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "update"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord), // size
		asm.JEq.Imm(asm.R7, 0, "update"),
		asm.JGT.Imm(asm.R7, maxWrite, "update"),
		asm.LoadMem(asm.R8, asm.R0, 8, asm.DWord),  // disp: the address so far
		asm.LoadMem(asm.R1, asm.R0, 16, asm.DWord), // base
		asm.LoadMem(asm.R9, asm.R0, 32, asm.DWord), // scale
	)
	// A register by its index: a comparison per register, as a program
	// may read its context only at constant offsets.
	pick := func(name string, scaled bool) {
		for i := int32(0); i < 21; i++ {
			jump := asm.JNE.Imm(asm.R1, i, fmt.Sprintf("%s%d", name, i+1))
			if i > 0 {
				jump = jump.WithSymbol(fmt.Sprintf("%s%d", name, i))
			}
			insns = append(insns, jump, asm.LoadMem(asm.R2, asm.R6, int16(i*8), asm.DWord))
			if scaled {
				insns = append(insns, asm.Mul.Reg(asm.R2, asm.R9))
			}
			insns = append(insns, asm.Add.Reg(asm.R8, asm.R2), asm.Ja.Label(name+"done"))
		}
		// No register (noReg): nothing to add.
		insns = append(insns,
			asm.Mov.Imm(asm.R2, 0).WithSymbol(fmt.Sprintf("%s%d", name, 21)),
			asm.Mov.Imm(asm.R2, 0).WithSymbol(name+"done"),
		)
	}
	pick("base", false)
	insns = append(insns, asm.LoadMem(asm.R1, asm.R0, 24, asm.DWord)) // index
	pick("index", true)
	insns = append(insns,
		asm.StoreMem(asm.RFP, addrOff, asm.R8, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, memOff),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Mov.Reg(asm.R3, asm.R8),
		asm.FnProbeReadUser.Call(),
		asm.JNE.Imm(asm.R0, 0, "update"),
		asm.StoreMem(asm.RFP, lenOff, asm.R7, asm.DWord),
		// Record and signal.
		asm.LoadMapPtr(asm.R1, hits).WithSymbol("update"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, recOff),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, int32(sigHit)),
		asm.FnSendSignalThread.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	)
	return insns
}

// setPlan stores where the probe in slot writes memory.
func (ps *probeSet) setPlan(slot uint32, w writePlan) error {
	return ps.plans.Put(slot, w)
}

// attach puts a probe at pc (a run-time address; staticBase is where a
// position-independent executable was loaded) for pid's threads only.
func (ps *probeSet) attach(pid int, sym string, pc, staticBase uint64, cookie uint64) (link.Link, error) {
	off, err := uprobes.FileOffset(ps.exe, pc, staticBase)
	if err != nil {
		return nil, err
	}
	return ps.uprobe(sym, off, pid, cookie)
}

// haveUprobeMulti tells whether the kernel has uprobe_multi links (Linux
// 6.6). The probes are then attached as such, one address each: removing
// a uprobe attached through a perf event waits for a grace period under
// a mutex global to the kernel (perf_uprobe_destroy), so that the probes
// of all workers came off one after another, about 0.1 s each (50 targets
// took 5.2 s to detach in make bench-resources).
var haveUprobeMulti = sync.OnceValue(func() bool {
	return features.HaveBPFLinkUprobeMulti() == nil
})

// uprobeAttachType is the attach type the program is loaded with, which
// says which kind of link it takes.
func uprobeAttachType() ebpf.AttachType {
	if haveUprobeMulti() {
		return ebpf.AttachTraceUprobeMulti
	}
	return ebpf.AttachNone
}

// uprobe attaches the program at file offset off in ps.exe, for pid's
// threads only.
func (ps *probeSet) uprobe(sym string, off uint64, pid int, cookie uint64) (link.Link, error) {
	if haveUprobeMulti() {
		return ps.ex.UprobeMulti(nil, ps.prog, &link.UprobeMultiOptions{Addresses: []uint64{off}, Cookies: []uint64{cookie}, PID: uint32(pid)})
	}
	return ps.ex.Uprobe(sym, ps.prog, &link.UprobeOptions{Address: off, PID: pid, Cookie: cookie})
}

// take removes and returns the record of tid's last hit, if there is one.
func (ps *probeSet) take(tid int) (hitRecord, bool) {
	var raw [hitRecordSize]byte
	key := uint32(tid)
	if err := ps.hits.LookupAndDelete(&key, &raw); err != nil {
		return hitRecord{}, false
	}
	var r hitRecord
	r.Cookie = binary.LittleEndian.Uint64(raw[0:])
	r.Time = binary.LittleEndian.Uint64(raw[8:])
	for i := range r.Regs {
		r.Regs[i] = binary.LittleEndian.Uint64(raw[16+8*i:])
	}
	r.MemAddr = binary.LittleEndian.Uint64(raw[16+21*8:])
	r.MemLen = min(binary.LittleEndian.Uint64(raw[16+21*8+8:]), maxWrite)
	copy(r.Mem[:], raw[16+21*8+16:])
	return r, true
}

// setGate opens (closed false) or closes the gate.
func (ps *probeSet) setGate(closed bool) error {
	v := uint64(0)
	if closed {
		v = 1
	}
	return ps.gate.Put(uint32(0), v)
}

// takeDropped returns and resets the hits probe slot dropped at the gate.
// A hit a probe counts meanwhile is in this count or the next, never lost.
func (ps *probeSet) takeDropped(slot uint32) uint64 {
	p := ps.dropped.at(slot)
	if atomic.LoadUint64(p) == 0 {
		return 0 // as it is almost always: spare the bus lock
	}
	return atomic.SwapUint64(p, 0)
}

// closeSlot makes the probe in slot stop no thread: its hits are counted
// in the kernel, each a trap but no stop, until openSlot. The rate limit
// does so at once when the allowance is spent, while the probe's link is
// being closed (which waits for the kernel).
func (ps *probeSet) closeSlot(slot uint32) error {
	atomic.StoreUint64(ps.closed.at(slot), 1)
	return nil
}

// openSlot opens the probe in slot again and returns the hits it refused
// while closed, each exactly once however the probe races with it.
func (ps *probeSet) openSlot(slot uint32) uint64 {
	n := atomic.SwapUint64(ps.closed.at(slot), 0)
	if n == 0 {
		return 0
	}
	return n - 1
}

// ptraceRegs turns a record's struct pt_regs into the ptrace layout Delve
// reads (which goes on with segment bases a uprobe does not see).
func (r *hitRecord) ptraceRegs() *linutil.AMD64PtraceRegs {
	g := r.Regs
	return &linutil.AMD64PtraceRegs{
		R15: g[0], R14: g[1], R13: g[2], R12: g[3], Rbp: g[4], Rbx: g[5],
		R11: g[6], R10: g[7], R9: g[8], R8: g[9], Rax: g[10], Rcx: g[11],
		Rdx: g[12], Rsi: g[13], Rdi: g[14], Orig_rax: g[15], Rip: g[16],
		Cs: g[17], Eflags: g[18], Rsp: g[19], Ss: g[20],
	}
}
