// Package snapshot lets Delve evaluate a hit of a thread that Delve did not
// stop: a proc.Target over one thread's registers and a memory that the
// caller chooses for each hit. Both backends read hits through it. The
// eBPF backend serves memory from the regions its probe copied; the Delve
// backend from the live process, whose hit thread is held in a ptrace stop
// while its other threads run.
//
// Process implements just enough of Delve's proc.ProcessInternal and
// proc.Thread for a Target that is never resumed: the embedded interfaces
// are nil, so anything else Delve might call panics, and the backends'
// captures recover from that.
package snapshot

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/linutil"
)

// Memory serves the memory reads of one hit.
type Memory interface {
	ReadMemory(buf []byte, addr uint64) (int, error)
}

// ErrNotCaptured is what reading memory a hit did not keep returns; the
// backends turn values that needed it into "<not captured: …>".
var ErrNotCaptured = errors.New("not captured")

// NullPage bounds the addresses that are never mapped in a Go program (the
// kernel's mmap_min_addr is at least this).
const NullPage = 4096

// Process is the process as one hit saw it, for Delve to decode: one
// thread's registers and a Memory.
type Process struct {
	proc.ProcessInternal // nil: only the methods below are used
	bi                   *proc.BinaryInfo
	entry                uint64
	bps                  proc.BreakpointMap
	thread               *thread
	threads              []proc.Thread // thread alone, for ThreadList
	live                 *os.File      // /proc/PID/mem
	file                 *os.File      // the executable
	static               []mapping     // file-backed mappings of the executable

	mem Memory // of the current hit
	// scratch is what BinInfo returns while ClearCaches runs.
	scratch *proc.BinaryInfo
}

// mapping is [start, end) of the address space, mapped from the executable
// at offset off; writable if the program may write it (its globals).
type mapping struct {
	start, end, off uint64
	writable        bool
}

// Open reads pid's executable's debug info and returns the Process and the
// Delve Target over it. The process must be amd64.
func Open(pid int) (*Process, *proc.Target, error) {
	return open(pid, nil)
}

// open is Open, with the Target reading through shared where it can (see
// OpenShared).
func open(pid int, shared *proc.BinaryInfo) (*Process, *proc.Target, error) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	entry, err := entryPoint(pid)
	if err != nil {
		return nil, nil, err
	}
	static, err := staticMappings(pid)
	if err != nil {
		return nil, nil, err
	}
	live, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, nil, fmt.Errorf("opening the process's memory: %w", err)
	}
	file, err := os.Open(exe)
	if err != nil {
		live.Close()
		return nil, nil, fmt.Errorf("opening the executable: %w", err)
	}
	p := &Process{bi: proc.NewBinaryInfo("linux", "amd64", true), entry: entry, bps: proc.NewBreakpointMap(), live: live, file: file, static: static}
	path := exe
	if sharable(shared, file, entry) {
		// Delve loads the debug info of the image at path with entry
		// point entry unless its BinaryInfo holds that image already:
		// under the path it was loaded with, shared is not read again.
		p.bi, path = shared, shared.Images[0].Path
	}
	p.thread = &thread{p: p, id: pid}
	p.threads = []proc.Thread{p.thread}
	_, addTarget := proc.NewGroup(group{}, proc.NewTargetGroupConfig{})
	tgt, err := addTarget(p, pid, p.thread, path, proc.StopAttached, "")
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("reading the debug info: %w", err)
	}
	if p.bi.Arch.Name != "amd64" {
		p.Close()
		return nil, nil, fmt.Errorf("supported on amd64 only, not %s", p.bi.Arch.Name)
	}
	return p, tgt, nil
}

// sharable reports whether shared is the debug info of file (the same
// executable) loaded at the address entry says this process has it at.
func sharable(shared *proc.BinaryInfo, file *os.File, entry uint64) bool {
	if shared == nil || len(shared.Images) != 1 {
		return false
	}
	f, err := elf.NewFile(file)
	if err != nil {
		return false
	}
	return entry-f.Entry == shared.Images[0].StaticBase
}

// OpenShared is Open, but where bi is the debug info of the same
// executable loaded at the same address, the Target reads through bi rather
// than its own, and is made without reading the debug info again (seconds
// for a large program): the processes of one program then hold one
// BinaryInfo, and the types Delve loads lazily into it, not one each. bi
// is not safe for concurrent use: the caller serializes every use of the
// Targets sharing it.
func OpenShared(pid int, bi *proc.BinaryInfo) (*Process, *proc.Target, error) {
	return open(pid, bi)
}

func (p *Process) BinInfo() *proc.BinaryInfo              { return p.bi }
func (p *Process) EntryPoint() (uint64, error)            { return p.entry, nil }
func (p *Process) FindThread(id int) (proc.Thread, bool)  { return p.thread, id == p.thread.id }
func (p *Process) ThreadList() []proc.Thread              { return p.threads }
func (p *Process) Breakpoints() *proc.BreakpointMap       { return &p.bps }
func (p *Process) Memory() proc.MemoryReadWriter          { return p }
func (p *Process) Valid() (bool, error)                   { return true, nil }
func (p *Process) WriteBreakpoint(*proc.Breakpoint) error { return nil }
func (p *Process) EraseBreakpoint(*proc.Breakpoint) error { return nil }
func (p *Process) SupportsBPF() bool                      { return false }
func (p *Process) Recorded() (bool, string)               { return false, "" }
func (p *Process) WriteMemory(uint64, []byte) (int, error) {
	return 0, errors.New("a snapshot is read-only")
}
func (p *Process) MemoryMap() ([]proc.MemoryMapEntry, error) {
	return nil, errors.New("no memory map")
}

// ReadMemory serves buf from the hit's Memory.
func (p *Process) ReadMemory(buf []byte, addr uint64) (int, error) {
	if p.mem == nil {
		return 0, fmt.Errorf("%w: %d bytes at %#x", ErrNotCaptured, len(buf), addr)
	}
	return p.mem.ReadMemory(buf, addr)
}

// ReadStatic serves buf if it lies in the executable's read-only mappings
// (code, type information, itabs, constant strings, which do not change
// while the program runs): from the live process, or once it has exited,
// from the executable. ok is false elsewhere. A nil Process serves nothing.
//
// The writable mappings, whose initialized globals change as the program
// runs, are not served: read at decoding they would show a later value
// than the hit's. What the hit did not copy of them is not captured.
func (p *Process) ReadStatic(buf []byte, addr uint64) (n int, ok bool, err error) {
	if p == nil {
		return 0, false, nil
	}
	return p.readMapped(buf, addr, false)
}

// readMapped is ReadStatic, serving the writable mappings too if writable.
func (p *Process) readMapped(buf []byte, addr uint64, writable bool) (n int, ok bool, err error) {
	end := addr + uint64(len(buf))
	for _, m := range p.static {
		if m.writable && !writable {
			continue
		}
		if addr >= m.start && end <= m.end {
			n, err := p.live.ReadAt(buf, int64(addr))
			if n == len(buf) {
				return n, true, nil
			}
			// An exited process's memory reads as empty.
			if n, ferr := p.file.ReadAt(buf, int64(m.off+addr-m.start)); n == len(buf) {
				return n, true, nil
			} else if err == nil {
				err = ferr
			}
			return 0, true, err
		}
	}
	return 0, false, nil
}

// StartMemory serves the executable's mappings as ReadStatic does, and its
// writable mappings too: for what the runtime writes only as it starts, its
// module data, which Delve needs to name a dynamic type and which lies
// among the globals (see dlvvalue.WarmModuleData). Never for a hit's
// values: the globals it reads are those at the time of the read.
func (p *Process) StartMemory() proc.MemoryReadWriter { return startMemory{p} }

type startMemory struct{ p *Process }

func (m startMemory) ReadMemory(buf []byte, addr uint64) (int, error) {
	n, ok, err := m.p.readMapped(buf, addr, true)
	if !ok {
		return 0, fmt.Errorf("%w: %d bytes at %#x", ErrNotCaptured, len(buf), addr)
	}
	return n, err
}

func (startMemory) WriteMemory(uint64, []byte) (int, error) {
	return 0, errors.New("the memory of a hit is read-only")
}

// ReadExecutable reads the executable's own bytes at addr, as the linker
// wrote them: the code without the breakpoints of probes.
func (p *Process) ReadExecutable(buf []byte, addr uint64) (int, error) {
	for _, m := range p.static {
		if addr >= m.start && addr < m.end {
			n := min(uint64(len(buf)), m.end-addr)
			return p.file.ReadAt(buf[:n], int64(m.off+addr-m.start))
		}
	}
	return 0, fmt.Errorf("%#x is not in the executable's mappings", addr)
}

// ReadLive reads the live process's memory.
func (p *Process) ReadLive(buf []byte, addr uint64) (int, error) {
	if addr < NullPage {
		return 0, syscall.EIO
	}
	n, err := p.live.ReadAt(buf, int64(addr))
	if n == len(buf) {
		return n, nil
	}
	if err == nil {
		err = syscall.EIO
	}
	return n, err
}

// Close releases the process's files.
func (p *Process) Close() {
	p.live.Close()
	p.file.Close()
}

// Set makes the Process that of one hit: thread tid with regs, its
// floating-point registers loaded by floats (nil: not captured), its memory
// served by mem.
func (p *Process) Set(tid int, regs *linutil.AMD64PtraceRegs, floats func(*linutil.AMD64Registers) error, mem Memory) {
	p.mem = mem
	p.thread.id = tid
	p.thread.regs = regs
	p.thread.floats = floats
	p.thread.common = proc.CommonThread{}
}

// ClearCaches has tgt, the Target over p, forget what Delve cached from the
// last hit, as Target.ClearCaches does, but for the runtime's module data:
// where the executable's type tables are, which do not move while the
// process runs, and which Delve would otherwise read again for the first
// interface of every hit (a twelfth of what decoding a hit cost). A load
// that fails is not kept, so the module data kept is one that was read.
// Target.ClearCaches forgets it in the BinaryInfo the process returns:
// during the call, p returns one of its own that nothing else uses.
func (p *Process) ClearCaches(tgt *proc.Target) {
	if p.scratch == nil {
		p.scratch = proc.NewBinaryInfo("linux", "amd64", true)
	}
	bi := p.bi
	p.bi = p.scratch
	defer func() { p.bi = bi }()
	tgt.ClearCaches()
}

// Thread returns the one thread of the process: the one that hit.
func (p *Process) Thread() proc.Thread { return p.thread }

// thread is the one thread of a Process.
type thread struct {
	proc.Thread // nil: only the methods below are used
	p           *Process
	id          int
	regs        *linutil.AMD64PtraceRegs
	floats      func(*linutil.AMD64Registers) error
	common      proc.CommonThread
}

func (t *thread) ThreadID() int                        { return t.id }
func (t *thread) BinInfo() *proc.BinaryInfo            { return t.p.bi }
func (t *thread) ProcessMemory() proc.MemoryReadWriter { return t.p }
func (t *thread) Common() *proc.CommonThread           { return &t.common }
func (t *thread) Breakpoint() *proc.BreakpointState    { return &proc.BreakpointState{} }
func (t *thread) SoftExc() bool                        { return false }
func (t *thread) SetCurrentBreakpoint(bool) error      { return nil }
func (t *thread) RestoreRegisters(proc.Registers) error {
	return errors.New("a snapshot is read-only")
}
func (t *thread) SetReg(uint64, *op.DwarfRegister) error {
	return errors.New("a snapshot is read-only")
}

func (t *thread) Registers() (proc.Registers, error) {
	if t.regs == nil {
		return nil, errors.New("no registers captured")
	}
	return regs{linutil.NewAMD64Registers(t.regs, t.loadFloats())}, nil
}

func (t *thread) loadFloats() func(*linutil.AMD64Registers) error {
	if t.floats != nil {
		return t.floats
	}
	return noFloats
}

// noFloats is why a value in a floating-point register cannot be read when
// the hit has no floating-point registers.
func noFloats(*linutil.AMD64Registers) error {
	return fmt.Errorf("%w: the floating-point registers", ErrNotCaptured)
}

// regs are a hit's registers. With the register ABI (Go 1.17 and later on
// amd64), R14 holds the current goroutine's g; Delve would otherwise look
// for it through the thread's TLS base, which a uprobe does not see.
type regs struct{ *linutil.AMD64Registers }

func (r regs) GAddr() (uint64, bool) { return r.Regs.R14, true }

func (r regs) Copy() (proc.Registers, error) {
	c := *r.Regs
	return regs{linutil.NewAMD64Registers(&c, noFloats)}, nil
}

// group is the process group of a Process, which is never resumed.
type group struct{ proc.ProcessGroup }

func (group) Close() error { return nil }

// entryPoint reads the process's entry point from its auxiliary vector.
func entryPoint(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the auxiliary vector: %w", err)
	}
	for i := 0; i+16 <= len(b); i += 16 {
		if binary.LittleEndian.Uint64(b[i:]) == 9 /* AT_ENTRY */ {
			return binary.LittleEndian.Uint64(b[i+8:]), nil
		}
	}
	return 0, errors.New("no entry point in the auxiliary vector")
}

// ExeOffset returns the offset in pid's executable of the code at pc, from
// the mapping of the executable that holds it: uprobes take offsets, and
// the executable may be position-independent.
func ExeOffset(pid int, pc uint64) (uint64, error) {
	ms, err := staticMappings(pid)
	if err != nil {
		return 0, err
	}
	for _, m := range ms {
		if m.start <= pc && pc < m.end {
			return pc - m.start + m.off, nil
		}
	}
	return 0, fmt.Errorf("pc %#x is in no mapping of the executable of pid %d", pc, pid)
}

// staticMappings returns the file-backed mappings of the executable: code,
// read-only data, and the data sections holding the runtime's module data
// and the initialized globals.
func staticMappings(pid int) ([]mapping, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	var out []mapping
	for _, line := range strings.Split(string(b), "\n") {
		// start-end perms offset dev inode path: a path with a space,
		// or an executable replaced on disk ("... (deleted)", as
		// readlink says too), is more than one field.
		f := strings.Fields(line)
		if len(f) < 6 || strings.Join(f[5:], " ") != exe {
			continue
		}
		m := mapping{writable: strings.Contains(f[1], "w")}
		if _, err := fmt.Sscanf(f[0]+" "+f[2], "%x-%x %x", &m.start, &m.end, &m.off); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}
