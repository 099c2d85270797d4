// Package uprobes holds what the agent's two uprobe users share: the eBPF
// backend, whose probes copy a hit, and the Delve backend, whose probes stop
// the thread that hit. Both name a PC by its offset in the executable,
// both name the kind of a value they could not read, and both turn the
// kernel's monotonic time of a hit into wall time.
package uprobes

import (
	"debug/elf"
	"fmt"
	"math"
	"reflect"
	"time"

	"golang.org/x/sys/unix"
)

// FileOffset turns a PC into the offset in the executable that uprobes
// take; staticBase is where a position-independent executable was loaded.
func FileOffset(exe string, pc, staticBase uint64) (uint64, error) {
	pc -= staticBase
	f, err := elf.Open(exe)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && pc >= p.Vaddr && pc < p.Vaddr+p.Memsz {
			return pc - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("pc %#x is in no executable segment", pc)
}

// KindName names a kind for "<not captured: …>".
func KindName(k reflect.Kind) string {
	switch k {
	case reflect.Ptr:
		return "pointer"
	case reflect.Invalid:
		return "value"
	}
	return k.String()
}

// MonoClock turns CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns and of
// the Delve backend's probe records, into wall time. The
// difference between the two clocks is measured again every second: NTP
// slews the wall clock against the monotonic one (up to 500 ppm, 1.8 s an
// hour), and eBPF hits must stay on the clock Delve's hits and the
// timeline read. Each measure reads the monotonic clock on either side of
// the wall clock and keeps the closest of a few tries: the decoding thread
// runs at nice 19, and a preemption between two reads would otherwise
// shift a hit by as long as it lasted.
type MonoClock struct {
	diff int64     // wall minus monotonic, ns
	at   time.Time // when diff was measured
}

// WallMinusMono returns the wall clock minus the monotonic one, in ns. A
// MonoClock is not safe for concurrent use.
func (m *MonoClock) WallMinusMono() int64 {
	if !m.at.IsZero() && time.Since(m.at) < time.Second {
		return m.diff
	}
	best := int64(math.MaxInt64)
	for range 5 {
		m1 := monotonicNow()
		w := time.Now().UnixNano()
		m2 := monotonicNow()
		if gap := m2 - m1; gap < best {
			best, m.diff = gap, w-(m1+m2)/2
		}
		if best < 2000 {
			break
		}
	}
	m.at = time.Now()
	return m.diff
}

func monotonicNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}
