package ebpf

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/riptrace/riptrace/agent/internal/snapshot"
)

// regionMemory is a hit's memory as the BPF program copied it: reads of
// memory that was not copied fail with errNotCaptured instead of reading the
// live process, whose memory has moved on since the hit. The one exception
// is the executable's read-only mappings (see snapshot.Process.ReadStatic),
// which Delve needs to name an interface's dynamic type; once the process
// has exited, the hits still in the ring buffer read them from the
// executable file instead. A package variable the probe did not copy is
// not captured: read live, it would be its value at decoding.
type regionMemory struct {
	p       *snapshot.Process
	regions []region // they may overlap
	misses  []span   // the reads that failed as not captured (see markUncaptured)
}

type region struct {
	addr uint64
	data []byte
}

// span is [addr, addr+n) of the address space.
type span struct{ addr, n uint64 }

func (s span) overlaps(o span) bool {
	return s.addr < o.addr+o.n && o.addr < s.addr+s.n
}

// errNotCaptured is what reading memory the hit did not copy returns; the
// decoder turns values that needed it into "<not captured: …>".
var errNotCaptured = snapshot.ErrNotCaptured

func (m *regionMemory) ReadMemory(buf []byte, addr uint64) (int, error) {
	end := addr + uint64(len(buf))
	for _, r := range m.regions {
		if addr >= r.addr && end <= r.addr+uint64(len(r.data)) {
			return copy(buf, r.data[addr-r.addr:]), nil
		}
	}
	if n, ok, err := m.p.ReadStatic(buf, addr); ok {
		return n, err
	}
	if addr < snapshot.NullPage {
		// No copy would have helped: say what Delve says of the live
		// process (an optimized variable whose pointer is gone, say).
		return 0, syscall.EIO
	}
	m.misses = append(m.misses, span{addr, uint64(len(buf))})
	return 0, fmt.Errorf("%w: %d bytes at %#x", errNotCaptured, len(buf), addr)
}

// word reads the word at addr from what the hit copied, as ReadMemory does,
// but a miss is not recorded: the stack cache reads return addresses it
// may not need (see dlvvalue.StackCache).
func (m *regionMemory) word(addr uint64) (uint64, bool) {
	for _, r := range m.regions {
		if addr >= r.addr && addr+8 <= r.addr+uint64(len(r.data)) {
			return binary.LittleEndian.Uint64(r.data[addr-r.addr:]), true
		}
	}
	return 0, false
}

// bytes returns the n bytes at addr as ReadMemory would read them, but a
// miss is not recorded: the direct decoder leaves what it cannot read to
// Delve, whose reads are recorded. The bytes may be the hit's own: they
// must not be changed.
func (m *regionMemory) bytes(addr uint64, n int64) ([]byte, bool) {
	end := addr + uint64(n)
	if n < 0 || end < addr {
		return nil, false
	}
	for _, r := range m.regions {
		if addr >= r.addr && end <= r.addr+uint64(len(r.data)) {
			return r.data[addr-r.addr : end-r.addr], true
		}
	}
	if addr < snapshot.NullPage || n > maxStaticRead {
		return nil, false
	}
	buf := make([]byte, n)
	if k, ok, err := m.p.ReadStatic(buf, addr); ok && err == nil && k == len(buf) {
		return buf, true
	}
	return nil, false
}

// maxStaticRead bounds what the direct decoder reads of the executable's
// mappings for one value.
const maxStaticRead = 1 << 16
