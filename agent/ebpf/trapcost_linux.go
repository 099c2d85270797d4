package ebpf

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent/internal/snapshot"
)

// hitCost is what agent.Disarm takes a hit with the probes in to have cost
// the thread that ran it (agent.Disarm.HitCost): twice what a bare uprobe
// trap costs on this host (trapCost), and at least the trap and
// captureMargin, or zero where the trap could not be timed, and then no
// estimate goes out. A fixed 25 µs, the bare trap's cost at low load on a
// small VM, let through estimates thousands of times too low under load:
// two runs of TestDisarm side by side saw 51 captures take 2.6 ms, and
// estimated 50,156 hits where 123 million ran. It waits for a measurement
// under way.
func hitCost() time.Duration {
	c, err := trapCost()
	if err != nil {
		return 0
	}
	return max(2*c, c+captureMargin)
}

// captureMargin bounds what a capture costs beyond a bare trap where traps
// are cheap (a microsecond or two on bare metal): make bench-perhit timed
// the capture program at 0.88 µs a hit (8 frames, arguments and locals)
// against the bare program's 0.10, beside a 23 µs trap on a VM.
const captureMargin = 10 * time.Microsecond

// trap holds what trapCost measured; a measurement that failed is tried
// again a minute later.
var trap struct {
	mu     sync.Mutex
	cost   time.Duration // 0: not measured
	err    error         // the last failure, at failed
	failed time.Time
}

// trapCost returns what a uprobe trap costs a thread of this host,
// measured once (measureTrap); the backend begins it as it attaches, off
// the path from trace to installed.
func trapCost() (time.Duration, error) {
	trap.mu.Lock()
	defer trap.mu.Unlock()
	if trap.cost > 0 {
		return trap.cost, nil
	}
	if trap.err != nil && time.Since(trap.failed) < time.Minute {
		return 0, trap.err
	}
	c, err := measureTrap(20, 50)
	if err != nil {
		trap.err, trap.failed = fmt.Errorf("timing a uprobe trap: %w", err), time.Now()
		return 0, trap.err
	}
	trap.cost = c
	return c, nil
}

// MeasuredTrap returns what a uprobe trap was measured to cost a thread of
// this host (trapCost), false while it is not, or is being measured.
func MeasuredTrap() (time.Duration, bool) {
	if !trap.mu.TryLock() {
		return 0, false
	}
	defer trap.mu.Unlock()
	return trap.cost, trap.cost > 0
}

// trapSite is the function measureTrap probes.
//
//go:noinline
func trapSite(x uint64) uint64 { return x*31 + 7 }

var trapSink uint64

// measureTrap attaches the bare program (probe.c's count) to trapSite in
// this process and times batches of n calls of it, in the calling
// thread's CPU time, which the kernel charges with the trap and which a
// loaded host's preemption does not inflate: it returns the median batch's
// cost a call. 20 batches of 50 take about 25 ms on a small VM.
func measureTrap(batches, n int) (time.Duration, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(probeObject))
	if err != nil {
		return 0, fmt.Errorf("reading the BPF object: %w", err)
	}
	var objs struct {
		Count  *ebpf.Program `ebpf:"count"`
		Counts *ebpf.Map     `ebpf:"counts"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return 0, fmt.Errorf("loading the counting program: %w", err)
	}
	defer objs.Count.Close()
	defer objs.Counts.Close()
	// From the mappings: a test binary has no symbols to look it up by.
	off, err := snapshot.ExeOffset(os.Getpid(), uint64(reflect.ValueOf(trapSite).Pointer()))
	if err != nil {
		return 0, err
	}
	ex, err := link.OpenExecutable("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	l, err := ex.Uprobe("trapSite", objs.Count, &link.UprobeOptions{Address: off, PID: os.Getpid()})
	if err != nil {
		return 0, fmt.Errorf("attaching a uprobe to the agent itself: %w", err)
	}
	costs := trapRuns(batches, n)
	l.Close()
	var fired uint64
	if err := objs.Counts.Lookup(uint32(0), &fired); err != nil {
		return 0, err
	}
	if fired != uint64(batches*n) {
		return 0, fmt.Errorf("the probe fired %d times in %d calls", fired, batches*n)
	}
	slices.Sort(costs)
	return costs[len(costs)/2], nil
}

// trapRuns times batches of n calls of trapSite in the calling thread's
// CPU time, a call each.
func trapRuns(batches, n int) []time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	costs := make([]time.Duration, batches)
	for i := range costs {
		c0, x := cpu(), trapSink
		for range n {
			x = trapSite(x)
		}
		trapSink = x
		costs[i] = (cpu() - c0) / time.Duration(n)
	}
	return costs
}
