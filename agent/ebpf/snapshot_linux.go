package ebpf

import (
	"fmt"
	"syscall"

	"github.com/riptrace/riptrace/agent/internal/snapshot"
)

// regionMemory is a hit's memory as the BPF program copied it: reads of
// memory that was not copied fail with errNotCaptured instead of reading the
// live process, whose memory has moved on since the hit. The one exception
// is the executable's file-backed mappings (see snapshot.Process.ReadStatic),
// which Delve needs to name an interface's dynamic type; once the process
// has exited, the hits still in the ring buffer read them from the
// executable file instead.
type regionMemory struct {
	p       *snapshot.Process
	regions []region // they may overlap
}

type region struct {
	addr uint64
	data []byte
}

// errNotCaptured is what reading memory the hit did not copy returns; the
// decoder turns values that needed it into "<not captured: …>".
var errNotCaptured = snapshot.ErrNotCaptured

func (m regionMemory) ReadMemory(buf []byte, addr uint64) (int, error) {
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
	return 0, fmt.Errorf("%w: %d bytes at %#x", errNotCaptured, len(buf), addr)
}
