package delve_test

import (
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
)

// hotSpec is a tracepoint on selfcheck's hot line, which runs without pause.
func hotSpec(t *testing.T, id string, rate int) fleet.Spec {
	return fleet.Spec{
		ID:       id,
		Location: fleet.Location{Path: "selfcheck/main.go", Line: agenttest.MarkerLine(t, selfcheckDir+"/main.go", "hot")},
		Capture:  fleet.Capture{Args: true},
		Limits:   fleet.Limits{MaxHitsPerSecond: rate},
	}
}

// TestDisarm: on a line that runs without pause, a tracepoint at 50 hits a
// second takes its uprobe out once each second's allowance is spent and
// puts it back for the next: the 50 a second still arrive, the hits run
// while the probe was out come as an estimate, and the target runs on
// unharmed. With a condition, every hit that arrives satisfies it.
func TestDisarm(t *testing.T) {
	t.Parallel()
	checkDisarm(t, nil)
}

// TestDisarmInt3 is TestDisarm with Delve's breakpoints, where the kernel
// refuses uprobes: each hit the limit refuses would stop the whole process,
// so the breakpoint comes out for the rest of the window too.
func TestDisarmInt3(t *testing.T) {
	t.Parallel()
	checkDisarm(t, delve.NewInt3(io.Discard))
}

func checkDisarm(t *testing.T, b *delve.Backend) {
	ctx, p, tg := attachTo(t, b, selfcheckDir, false)
	p.WaitOutput(t, "ALIVE", 30*time.Second)
	for k, cond := range []string{"", "i % 7 != 3"} {
		id := fmt.Sprintf("disarm%d", k)
		spec := hotSpec(t, id, 50)
		spec.Condition = cond
		if _, err := tg.Set(ctx, spec); err != nil {
			t.Fatal(err)
		}
		hits := agenttest.HitsInWindows(t, tg.Hits(), id, 3)
		for _, h := range hits {
			if h.DropsOnly || cond == "" {
				continue
			}
			if i := agenttest.ArgUint(t, h.Hit, "i"); i%7 == 3 {
				t.Fatalf("condition %q: a hit with i = %d", cond, i)
			}
		}
		agenttest.CheckWindows(t, fmt.Sprintf("condition %q", cond), hits)
		if cond == "" {
			// Each hit a stop, the line ran at what the stops let it:
			// no estimate, or one within 2x of the runs missed.
			agenttest.CheckEstimates(t, "the hot line", hits, "i")
		}
		if err := tg.Clear(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	agenttest.CheckSelfcheck(t, p)
}

// TestDisarmEstimate: on a line that runs 50 times a second, a
// tracepoint at 5 a second has its uprobe out most of each window, and the
// runs meanwhile, which the line counts itself, come as an estimate within
// 2x of the truth: the stops of its captures hold the line little.
func TestDisarmEstimate(t *testing.T) {
	t.Parallel()
	checkEstimate(t, nil, true)
}

// TestDisarmEstimateInt3 is TestDisarmEstimate with Delve's breakpoints,
// which give no estimate (each capture stops the whole process for longer
// than the stop budget measures: see agent.Disarm.NoEstimate): the hits
// must say so, and count no more drops than the runs missed.
func TestDisarmEstimateInt3(t *testing.T) {
	t.Parallel()
	checkEstimate(t, delve.NewInt3(io.Discard), false)
}

// checkEstimate checks the estimates of the cool line with backend b,
// which must give some if want, and otherwise none, saying so.
func checkEstimate(t *testing.T, b *delve.Backend, want bool) {
	ctx, p, tg := attachTo(t, b, selfcheckDir, false)
	p.WaitOutput(t, "ALIVE", 30*time.Second)
	spec := hotSpec(t, "cool", 5)
	spec.Location.Line = agenttest.MarkerLine(t, selfcheckDir+"/main.go", "cool")
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// A loaded host starves the line now and then, and it catches up in
	// a burst: armings whose rates differ have no estimate, rightly. Up
	// to three tries of four windows for one that has.
	for try := 1; ; try++ {
		hits := agenttest.HitsInWindows(t, tg.Hits(), "cool", 4)
		n, none := agenttest.CheckEstimates(t, "the cool line", hits, "seq")
		if !want {
			if n > 0 || none == 0 {
				t.Errorf("%d spans with an estimate and %d saying there is none, want only the latter:\n%s", n, none, agenttest.DescribeWindows(hits))
			}
			break
		}
		if n > 0 {
			break
		}
		if try == 3 {
			t.Errorf("no estimate in 3 tries of 4 windows of a line its captures held little; the last:\n%s", agenttest.DescribeWindows(hits))
			break
		}
	}
	agenttest.CheckSelfcheck(t, p)
}

// TestDisarmQuiet: a burst that ends while the rate limit has a
// tracepoint's uprobe out leaves its line quiet once the probe is back in.
// What its next hit would have told (the hits refused before the probe
// came out, and that the estimate of those run meanwhile is withdrawn)
// comes in a notice then, not when the line next runs, which may be never.
// Not in int3 mode, where telling it would stop the process.
func TestDisarmQuiet(t *testing.T) {
	t.Parallel()
	b := delve.New(io.Discard)
	if mode, why := b.Mode(); mode != "uprobe" {
		t.Skipf("the backend uses %s here (%v): its drops wait for the next hit", mode, why)
	}
	const calls, rate = 300000, 5 // the calls about a third of a second untraced
	ctx, p, tg := attachTo(t, b, valuesDir, false, "-every", "0", "-par", "1", "-burst", fmt.Sprint(calls))
	spec := fleet.Spec{
		ID:       "quiet",
		Location: fleet.Location{Path: "values/main.go", Line: agenttest.MarkerLine(t, valuesDir+"/main.go", "work")},
		Capture:  fleet.Capture{Args: true},
		Limits:   fleet.Limits{MaxHitsPerSecond: rate},
	}
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	p.WaitOutput(t, "BURST k=1 ", time.Minute)
	agenttest.CheckQuiet(t, tg.Hits(), "quiet", calls, rate)
}

// TestDisarmHitCondition: a hit condition that needs every hit counted (%
// 1000) keeps the probe in when the allowance is spent: each hit that
// arrives is a thousandth call of the line, counted from the first hit.
func TestDisarmHitCondition(t *testing.T) {
	t.Parallel()
	ctx, p, tg := attachTo(t, nil, selfcheckDir, false)
	p.WaitOutput(t, "ALIVE", 30*time.Second)
	spec := hotSpec(t, "every1000", 50)
	spec.HitCondition = "% 1000"
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	hits := agenttest.HitsFor(t, tg.Hits(), "every1000", 3*time.Second)
	var first uint64
	n := 0
	for _, h := range hits {
		if h.DropsOnly {
			continue
		}
		i := agenttest.ArgUint(t, h.Hit, "i")
		if n == 0 {
			first = i
		} else if (i-first)%1000 != 0 {
			t.Fatalf("hit %d has i = %d, %d calls after the first hit's: not a multiple of 1000", n, i, i-first)
		}
		n++
		if h.Uncounted.N > 0 {
			t.Fatalf("hit %d carries an estimate: the probe was taken out, losing count", n)
		}
	}
	if n < 2 {
		t.Fatalf("%d hits in 3s", n)
	}
	agenttest.CheckSelfcheck(t, p)
}

// TestRearmStorm: a uprobe taken out and put back every few milliseconds
// (the window shortened to 5 ms) for seconds leaves the target running and
// right, and hits still arrive, through replacements and clears.
func TestRearmStorm(t *testing.T) {
	t.Setenv(agent.WindowEnv, "5ms") // the worker inherits it
	ctx, p, tg := attachTo(t, nil, selfcheckDir, false)
	p.WaitOutput(t, "ALIVE", 30*time.Second)
	spec := hotSpec(t, "storm", 50)
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	agenttest.RearmStorm(t, tg, p, spec)
}

// TestBudgetInt3 spends int3 mode's stop budget with the traps alone: at
// 50 hits a second allowed, each a stop of the process, a budget of 5%
// is spent by the traps even when every capture is refused. The
// breakpoint must then come out until the next window, or the budget is
// never repaid and the tracepoint goes silent for good (no hit, no
// notice, no removal: a stressed CI run waited three minutes for one).
// Hits keep coming, each saying the budget dropped the others.
func TestBudgetInt3(t *testing.T) {
	t.Parallel()
	b := delve.NewInt3(io.Discard)
	b.SetStopBudget(0.05)
	ctx, p, tg := attachTo(t, b, selfcheckDir, false)
	p.WaitOutput(t, "ALIVE", 30*time.Second)
	if _, err := tg.Set(ctx, hotSpec(t, "spent", 50)); err != nil {
		t.Fatal(err)
	}
	var hits, budget int
	deadline := time.After(time.Minute)
	for hits < 3 || budget == 0 {
		select {
		case h, ok := <-tg.Hits():
			if !ok {
				t.Fatal("the hit channel closed")
			}
			if h.Fault != nil {
				t.Fatalf("after %d hits: %v", hits, h.Fault)
			}
			if h.DropsOnly {
				continue
			}
			hits++
			if strings.Contains(h.Throttle, "stop budget") {
				budget++
			}
		case <-deadline:
			t.Fatalf("%d hits in a minute, %d saying the stop budget dropped others: want 3, one of them saying so", hits, budget)
		}
	}
	agenttest.CheckSelfcheck(t, p)
}
