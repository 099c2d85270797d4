package ebpf_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestNestedDropped: a hit that finds its CPU's scratch taken, as by a run
// of the capture program that the kernel preempted mid-record (probe.c's
// capture), is dropped and counted, with its reason, and copies nothing.
// The test holds every CPU's scratch itself: this kernel boots with
// preempt=none, which never preempts the program, so real nesting cannot be
// provoked here. The hits of a burst, which the condition filters out, are
// not counted; the one call that meets it while the scratch is held is; the
// call after the release leaves with that one drop, and its own values.
func TestNestedDropped(t *testing.T) {
	needEBPF(t)
	for _, flags := range [][]string{nil, {agenttest.NoOpt}} {
		t.Run(fmt.Sprint(flags), func(t *testing.T) {
			bin := agenttest.BuildTarget(t, valuesDir, flags...)
			p := agenttest.Start(t, bin, "-every", "0", "-par", "8", "-burst", "500")
			tgt := attach(t, ebpf.New(), p.Pid)
			release, err := ebpf.HoldScratch(tgt)
			if err != nil {
				t.Fatal(err)
			}
			tp := workSpec(t, "nested")
			tp.Condition = "n == -1" // evaluated in the program (see TestCompileCond)
			set(t, tgt, tp)
			burst(t, p, 1)
			if err := syscall.Kill(p.Pid, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			testsupport.CheckFor(t, time.Minute, 10*time.Millisecond, func() error {
				if n := strings.Count(p.Output(), "CALLED n=-1"); n != 1 {
					return fmt.Errorf("%d calls done, want 1", n)
				}
				return nil
			})
			if err := release(); err != nil {
				t.Fatal(err)
			}
			// call checks that the first hit out is the call's, n = -1:
			// nothing of the held call, nor of the burst, was sent.
			h, ok := call(t, p, tgt, 30*time.Second)
			if !ok {
				t.Fatal("the call after the release did not hit")
			}
			t.Logf("dropped %d: %s", h.Dropped, h.Throttle)
			if h.Dropped != 1 {
				t.Errorf("the call after the release says %d dropped, want 1: the call made while the scratch was held", h.Dropped)
			}
			if !strings.Contains(h.Throttle, "preempted") || strings.Contains(h.Throttle, "ring buffer") {
				t.Errorf("the drop says %q, want preemption named, alone", h.Throttle)
			}
		})
	}
}

// TestNestedDroppedRegister is TestNestedDropped with the condition's
// variable in a register, where the program reads it from the uprobe's
// registers rather than from the stack: the floats target's fee line,
// optimized, where n is in RAX. Of the first burst, run while the scratch
// is held, the 10 hits with n >= 1011 are counted, the others filtered
// out; the second burst's hits all leave, and carry those 10.
func TestNestedDroppedRegister(t *testing.T) {
	needEBPF(t)
	p := agenttest.Start(t, agenttest.BuildTarget(t, floatsDir))
	tgt := attach(t, ebpf.New(), p.Pid)
	release, err := ebpf.HoldScratch(tgt)
	if err != nil {
		t.Fatal(err)
	}
	tp := floatSpec(t, "nested", "fee")
	tp.Condition = "n >= 1011"
	set(t, tgt, tp)
	burst(t, p, 1)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	const burst = 20
	hits := burstHits(t, p, tgt, 2, burst)
	var dropped uint64
	seen := make(map[int]bool)
	for _, h := range hits {
		n := argN(t, h.Hit)
		if n <= 2000 || n > 2000+burst || seen[n] {
			t.Fatalf("hit with n = %d: want each of 2001 to %d once", n, 2000+burst)
		}
		seen[n] = true
		dropped += h.Dropped
		if h.Dropped > 0 && !strings.Contains(h.Throttle, "preempted") {
			t.Errorf("the drop says %q, want preemption named", h.Throttle)
		}
	}
	if len(hits) != burst || dropped != 10 {
		t.Errorf("%d hits, %d dropped; want %d, and 10 dropped: the first burst's hits with n >= 1011", len(hits), dropped, burst)
	}
}
