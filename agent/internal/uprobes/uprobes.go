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
	"os"
	"reflect"
	"strconv"
	"strings"
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
// slews the wall clock against the monotonic one, and eBPF hits must stay
// on the clock Delve's hits and the timeline read. Each measure reads the
// monotonic clock on either side of the wall clock, a few times: the
// decoding thread runs at nice 19, and a preemption between two reads
// makes that measure as uncertain as it lasted. The measure kept is the
// one whose error is least now (half its gap, plus drift since), as
// fleet.Clock keeps the best clock sample: on a loaded machine every try
// of a new measure may be preempted, and an older, tighter one is then
// better. Err says how far off the difference may be, for the hit's bound.
type MonoClock struct {
	diff     int64 // wall minus monotonic, ns
	err      int64 // half the gap of the reads that measured diff
	measured int64 // when diff was measured (monotonic, ns)
	at       int64 // when it was last measured again (monotonic, ns); 0 before the first
}

// monoDrift is how fast the difference may drift, in ns per second: NTP's
// slew of the wall clock, as fleet.Clock allows for (20 ppm).
const monoDrift = 20_000

// At returns, for time mono on the monotonic clock, the wall clock minus
// the monotonic one and how far off that may be (the measure's error, and
// the drift between mono and when it was measured), in ns. It measures
// again once mono is a second past the last measure: mono is a hit's
// capture, which the decoder meets in order, and the clock reads for each
// hit (now to decide, now for the drift) were 1-2 % of the eBPF agent's
// CPU. A MonoClock is not safe for concurrent use.
func (m *MonoClock) At(mono int64) (diff, err int64) {
	if m.at == 0 || mono-m.at >= int64(time.Second) {
		m.measure()
	}
	age := mono - m.measured
	if age < 0 {
		age = -age
	}
	return m.diff, m.err + int64(float64(age)/1e9*monoDrift)
}

// WallMinusMono returns the wall clock minus the monotonic one now, in ns.
func (m *MonoClock) WallMinusMono() int64 {
	diff, _ := m.At(monotonicNow())
	return diff
}

// measure measures the difference again, and keeps the new measure if its
// error is less than the last one's now.
func (m *MonoClock) measure() {
	best, diff, at := int64(math.MaxInt64), int64(0), int64(0)
	for range 5 {
		m1 := monotonicNow()
		w := time.Now().UnixNano()
		m2 := monotonicNow()
		if gap := m2 - m1; gap < best {
			best, diff, at = gap, w-(m1+m2)/2, (m1+m2)/2
		}
		if best < 2000 {
			break
		}
	}
	if m.at == 0 || best/2+1 <= m.err+int64(float64(at-m.measured)/1e9*monoDrift) {
		m.diff, m.err, m.measured = diff, best/2+1, at
	}
	m.at = at
}

// monotonicNow reads CLOCK_MONOTONIC, in ns.
func monotonicNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// ThreadSched returns a reader of what the kernel's scheduler says of the
// threads of process pid (/proc/PID/task/TID/schedstat): for thread tid,
// the time it has run, and the time it has waited, runnable, on a run
// queue for a CPU, both in ns. ok is false once the thread is gone (or
// the kernel keeps no such statistics).
func ThreadSched(pid int) func(tid int) (run, wait time.Duration, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	return func(tid int) (run, wait time.Duration, ok bool) {
		b, err := os.ReadFile(dir + strconv.Itoa(tid) + "/schedstat")
		if err != nil {
			return 0, 0, false
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, 0, false
		}
		r, err1 := strconv.ParseInt(f[0], 10, 64)
		w, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, false
		}
		return time.Duration(r), time.Duration(w), true
	}
}

// ProcessCPU returns a reader of the CPU time that process pid has had in
// all its threads, from the kernel's process CPU clock: exact to the
// nanosecond, and a clock_gettime call to read. It reads zero once the
// process is gone.
func ProcessCPU(pid int) func() time.Duration {
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) of the kernel's
	// posix-timers.h.
	clock := int32(^pid<<3 | 2)
	return func() time.Duration {
		var ts unix.Timespec
		if unix.ClockGettime(clock, &ts) != nil {
			return 0
		}
		return time.Duration(ts.Nano())
	}
}
