package delve_test

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestBudgetCountsConditions traces a line run 5000 times a second with a
// condition that holds once: every call stops the thread to evaluate it,
// and each of those stops counts against a 5% stop budget. Once the budget
// is spent, the process must be stopped little more than that, and the
// dropped hits must be reported with the budget as the reason, though no
// hit ever leaves.
func TestBudgetCountsConditions(t *testing.T) {
	t.Parallel()
	b := delve.New(io.Discard)
	if mode, why := b.Mode(); mode != "uprobe" {
		t.Skipf("the backend uses %s here (%v): its budget is TestStopBudget's", mode, why)
	}
	b.SetStopBudget(0.05)
	ctx, p, tg := attachTo(t, b, pacedDir, false, "-rate", "5000")
	spec := pacedSpec(t, "tick", "tick")
	spec.Condition = "seq == 1"
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	stopped := tg.(interface{ Stopped() time.Duration })
	deadline := time.After(30 * time.Second)
	select {
	case h := <-tg.Hits():
		if h.Fault != nil {
			t.Fatal(h.Fault)
		}
		if !h.DropsOnly {
			t.Fatalf("a hit of a condition that never holds: %+v", h.Hit)
		}
		if !strings.Contains(h.Throttle, "stop budget") || h.Dropped == 0 {
			t.Fatalf("drops reported as %d %q, want some by the stop budget", h.Dropped, h.Throttle)
		}
	case <-deadline:
		t.Fatal("no drops reported in 30s")
	}
	// The worker reports the stopped time once a second.
	s0, w0 := stopped.Stopped(), time.Now()
	time.Sleep(3 * time.Second)
	share := (stopped.Stopped() - s0).Seconds() / time.Since(w0).Seconds()
	t.Logf("threads stopped %.1f%% of 3s under a 5%% budget", share*100)
	if share > 0.1 {
		t.Errorf("threads stopped %.1f%% of the time under a 5%% budget", share*100)
	}
	n := strings.Count(p.Output(), "ALIVE")
	agenttest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if strings.Count(p.Output(), "ALIVE") <= n {
			return fmt.Errorf("no new ALIVE line")
		}
		return nil
	})
}

// TestBudgetRemovesHotLine traces, with Delve's breakpoints (int3 mode, where
// every trap stops the whole process), a line run 5000 times a second under
// a 5% stop budget: its traps alone cost more than the budget, so the
// tracepoint is removed. The hits dropped before the removal must be
// counted, with the hits and with the removal notice, and the count named
// in the notice; its advice must not be a condition, which Delve evaluates
// in the same stop.
func TestBudgetRemovesHotLine(t *testing.T) {
	// Not parallel: the mode is read from the environment once, when the
	// backend first asks.
	t.Setenv("RIPTRACE_DELVE_MODE", "int3")
	b := delve.New(io.Discard)
	if mode, _ := b.Mode(); mode != "int3" {
		t.Fatalf("the backend runs in %s mode, want int3", mode)
	}
	b.SetStopBudget(0.05)
	ctx, p, tg := attachTo(t, b, pacedDir, false, "-rate", "5000")
	if _, err := tg.Set(ctx, pacedSpec(t, "tick", "tick")); err != nil {
		t.Fatal(err)
	}
	var dropped, published uint64
	deadline := time.After(60 * time.Second)
	for {
		var h agent.Hit
		select {
		case h = <-tg.Hits():
		case <-deadline:
			t.Fatalf("not removed within 60s: %d hits, %d dropped", published, dropped)
		}
		dropped += h.Dropped
		if h.Fault == nil {
			if !h.DropsOnly {
				published++
			}
			continue
		}
		t.Logf("removed after %d hits, %d dropped: %v", published, dropped, h.Fault)
		if h.Fault.Code != fleet.CodeStopBudget {
			t.Fatalf("removed with code %s, want %s: %v", h.Fault.Code, fleet.CodeStopBudget, h.Fault)
		}
		if dropped == 0 {
			t.Errorf("no dropped hit counted, though the budget removed the line for its bare traps")
		}
		if want := fmt.Sprintf("after %d hits were dropped", dropped); !strings.Contains(h.Fault.Message, want) {
			t.Errorf("removal notice %q does not say %q", h.Fault.Message, want)
		}
		if strings.Contains(h.Fault.Message, "condition") || !strings.Contains(h.Fault.Message, "--backend ebpf") {
			t.Errorf("removal notice %q: want the eBPF backend as advice, and no condition", h.Fault.Message)
		}
		break
	}
	n := strings.Count(p.Output(), "ALIVE")
	agenttest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if strings.Count(p.Output(), "ALIVE") <= n {
			return fmt.Errorf("no new ALIVE line")
		}
		return nil
	})
}

// TestBudgetTakesProbesOut traces, with no rate limit, a line run 20000
// times a second under a 1% stop budget, which its stops spend at once.
// While the budget's gate is closed, a hit stops no thread but each run of
// the line would still trap and be counted: the probe must come out
// instead, so that few of the calls between the first hit and the last are
// counted as dropped, the rest estimated and said to be the budget's.
func TestBudgetTakesProbesOut(t *testing.T) {
	t.Parallel()
	b := delve.New(io.Discard)
	if mode, why := b.Mode(); mode != "uprobe" {
		t.Skipf("the backend uses %s here (%v): its probes have no gate", mode, why)
	}
	b.SetStopBudget(0.01)
	ctx, _, tg := attachTo(t, b, pacedDir, false, "-rate", "20000")
	if _, err := tg.Set(ctx, pacedSpec(t, "tick", "tick")); err != nil {
		t.Fatal(err)
	}
	var first, last int
	var counted, uncounted uint64
	budget := false
	n := 0
	// A machine so busy that the target barely runs takes longer to make
	// enough calls to tell.
	for k := 0; k < 15 && last-first < 20000; k++ {
		for _, h := range agenttest.HitsFor(t, tg.Hits(), "tick", 4*time.Second) {
			if h.DropsOnly {
				// The gate's counts, sent as it opens.
				if n > 0 {
					counted += h.Dropped
				}
				continue
			}
			seq, err := strconv.Atoi(fleettest.Var(h.Exprs, "seq").Value)
			if err != nil {
				t.Fatalf("seq: %v", err)
			}
			if n == 0 {
				first = seq
			} else {
				// Counted since the hit before, as the estimate is.
				counted += h.Dropped
				uncounted += h.Uncounted.N
				// An estimate, or word that there is none (the
				// stops held the line most of the time).
				budget = budget || (h.Uncounted.Any()) && strings.Contains(h.Throttle, "stop budget")
			}
			last = seq
			n++
		}
	}
	calls := uint64(last - first)
	t.Logf("%d hits, %d calls from the first to the last: %d dropped hits counted, %d estimated", n, calls, counted, uncounted)
	if n < 3 || calls < 20000 {
		t.Fatalf("%d hits over %d calls in 60s: too few to tell", n, calls)
	}
	if counted > calls/2 {
		t.Errorf("%d of %d calls counted as dropped: the probe stayed in while the budget's gate was closed, each call a trap", counted, calls)
	}
	if !budget {
		t.Errorf("no hit carried an estimate (or word of none) with the stop budget as the reason")
	}
}
