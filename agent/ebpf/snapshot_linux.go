package ebpf

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/linutil"
)

// snapshot is the process as one hit saw it, for Delve to decode: the
// registers and the memory regions the BPF program copied. Delve's
// evaluation runs on it as on a stopped process, so values come out exactly
// as the Delve backend renders them; a read of memory that was not copied
// fails with errNotCaptured instead of reading the live process, whose
// memory has moved on since the hit.
//
// The one exception is the executable's own file-backed mappings: code,
// type information and the runtime's module data tables, which Delve needs
// to name an interface's dynamic type, are read from the live process. They
// do not change while the program runs; the initialized globals that share
// those mappings can, and a hit's value that points into them (rare for a
// local) is read as it is at decoding, a moment after the hit. Once the
// process has exited, the hits still in the ring buffer read them from the
// executable file instead: the tables are as the linker wrote them, the
// globals as they were before the program ran.
//
// snapshot implements just enough of Delve's proc.ProcessInternal and
// proc.Thread for a Target that is never resumed: the embedded interfaces
// are nil, so anything else Delve might call panics, and the capture
// recovers from that.
type snapshot struct {
	proc.ProcessInternal // nil: only the methods below are used
	bi                   *proc.BinaryInfo
	entry                uint64
	bps                  proc.BreakpointMap
	thread               *thread
	live                 *os.File  // /proc/PID/mem
	file                 *os.File  // the executable
	static               []mapping // file-backed mappings of the executable

	regions []region // of the current hit; they may overlap
}

type region struct {
	addr uint64
	data []byte
}

// mapping is [start, end) of the address space, mapped from the executable
// at offset off.
type mapping struct {
	start, end, off uint64
}

// nullPage bounds the addresses that are never mapped in a Go program (the
// kernel's mmap_min_addr is at least this).
const nullPage = 4096

// errNotCaptured is what reading memory the hit did not copy returns; the
// decoder turns values that needed it into "<not captured: …>".
var errNotCaptured = errors.New("not captured")

func (s *snapshot) BinInfo() *proc.BinaryInfo              { return s.bi }
func (s *snapshot) EntryPoint() (uint64, error)            { return s.entry, nil }
func (s *snapshot) FindThread(id int) (proc.Thread, bool)  { return s.thread, id == s.thread.id }
func (s *snapshot) ThreadList() []proc.Thread              { return []proc.Thread{s.thread} }
func (s *snapshot) Breakpoints() *proc.BreakpointMap       { return &s.bps }
func (s *snapshot) Memory() proc.MemoryReadWriter          { return s }
func (s *snapshot) Valid() (bool, error)                   { return true, nil }
func (s *snapshot) WriteBreakpoint(*proc.Breakpoint) error { return nil }
func (s *snapshot) EraseBreakpoint(*proc.Breakpoint) error { return nil }
func (s *snapshot) SupportsBPF() bool                      { return false }
func (s *snapshot) Recorded() (bool, string)               { return false, "" }
func (s *snapshot) WriteMemory(uint64, []byte) (int, error) {
	return 0, errors.New("a snapshot is read-only")
}
func (s *snapshot) MemoryMap() ([]proc.MemoryMapEntry, error) {
	return nil, errors.New("no memory map")
}

// ReadMemory serves buf from the copied regions, or for the executable's
// file-backed mappings from the live process, or from the executable once
// the process is gone.
func (s *snapshot) ReadMemory(buf []byte, addr uint64) (int, error) {
	end := addr + uint64(len(buf))
	for _, r := range s.regions {
		if addr >= r.addr && end <= r.addr+uint64(len(r.data)) {
			return copy(buf, r.data[addr-r.addr:]), nil
		}
	}
	for _, m := range s.static {
		if addr >= m.start && end <= m.end {
			n, err := s.live.ReadAt(buf, int64(addr))
			if n == len(buf) {
				return n, nil
			}
			// An exited process's memory reads as empty.
			if n, ferr := s.file.ReadAt(buf, int64(m.off+addr-m.start)); n == len(buf) {
				return n, nil
			} else if err == nil {
				err = ferr
			}
			return 0, err
		}
	}
	if addr < nullPage {
		// No copy would have helped: say what Delve says of the live
		// process (an optimized variable whose pointer is gone, say).
		return 0, syscall.EIO
	}
	return 0, fmt.Errorf("%w: %d bytes at %#x", errNotCaptured, len(buf), addr)
}

func (s *snapshot) close() {
	s.live.Close()
	s.file.Close()
}

// set makes the snapshot that of one hit.
func (s *snapshot) set(tid int, regs *linutil.AMD64PtraceRegs, regions []region) {
	s.regions = regions
	s.thread.id = tid
	s.thread.regs = regs
	s.thread.common = proc.CommonThread{}
}

// thread is the one thread of a snapshot: the one that hit.
type thread struct {
	proc.Thread // nil: only the methods below are used
	s           *snapshot
	id          int
	regs        *linutil.AMD64PtraceRegs
	common      proc.CommonThread
}

func (t *thread) ThreadID() int                        { return t.id }
func (t *thread) BinInfo() *proc.BinaryInfo            { return t.s.bi }
func (t *thread) ProcessMemory() proc.MemoryReadWriter { return t.s }
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
	return regs{linutil.NewAMD64Registers(t.regs, noFloats)}, nil
}

// noFloats is why a value in a floating-point register cannot be read: a
// uprobe's BPF program sees only the general-purpose registers.
func noFloats(*linutil.AMD64Registers) error {
	return fmt.Errorf("%w: the floating-point registers", errNotCaptured)
}

// regs are a hit's registers. With the register ABI (Go 1.17 and later on
// amd64), R14 holds the current goroutine's g, which is where the BPF
// program found it; Delve would otherwise look for it through the thread's
// TLS base, which a uprobe does not see.
type regs struct{ *linutil.AMD64Registers }

func (r regs) GAddr() (uint64, bool) { return r.Regs.R14, true }

func (r regs) Copy() (proc.Registers, error) {
	c := *r.Regs
	return regs{linutil.NewAMD64Registers(&c, noFloats)}, nil
}

// group is the process group of a snapshot, which is never resumed.
type group struct{ proc.ProcessGroup }

func (group) Close() error { return nil }
