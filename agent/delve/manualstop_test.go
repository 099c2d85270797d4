package delve_test

import (
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

const pacedDir = "../testdata/targets/paced"

// TestSetClearWhileHot sets and clears a second tracepoint again and again
// while one on paced's tick hits every half millisecond. Each Set and Clear
// stops the running process on request, often just as tick's breakpoint
// traps: every call to tick must still be reported at most once (its seq
// strictly increasing from hit to hit), and the target must keep calling
// tick meanwhile.
func TestSetClearWhileHot(t *testing.T) {
	t.Parallel()
	ctx, _, tg := attachTo(t, nil, pacedDir, true, "-rate", "2000")
	spec := func(id, marker string) fleet.Spec { return pacedSpec(t, id, marker) }
	if _, err := tg.Set(ctx, spec("tick", "tick")); err != nil {
		t.Fatal(err)
	}
	type seen struct {
		seq  int
		time int64
	}
	hits := make(chan []seen, 1)
	go func() {
		var all []seen
		for h := range tg.Hits() {
			if h.Fault != nil {
				t.Errorf("fault: %v", h.Fault)
				continue
			}
			if h.Tracepoint != "tick" {
				continue
			}
			v := fleettest.Var(h.Exprs, "seq")
			seq, err := strconv.Atoi(v.Value)
			if err != nil {
				t.Errorf("seq %q: %v", v.Value, err)
				continue
			}
			all = append(all, seen{seq, h.Time})
		}
		hits <- all
	}()
	for i := range 20 {
		id := fmt.Sprintf("other%d", i)
		if _, err := tg.Set(ctx, spec(id, "second")); err != nil {
			t.Fatal(err)
		}
		if err := tg.Clear(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	all := <-hits
	if len(all) < 2 {
		t.Fatalf("%d hits of tick", len(all))
	}
	dups := 0
	for i := 1; i < len(all); i++ {
		if all[i].seq <= all[i-1].seq {
			dups++
			if dups <= 10 {
				t.Errorf("call %d reported again %v after call %d", all[i].seq, time.Duration(all[i].time-all[i-1].time), all[i-1].seq)
			}
		}
	}
	if dups > 0 {
		t.Errorf("%d of %d hits repeat a call already reported", dups, len(all))
	}
	// Every hit came from a call of its own: the target ran on.
	if first, last := all[0].seq, all[len(all)-1].seq; last-first < len(all)-1 {
		t.Errorf("%d hits between calls %d and %d", len(all), first, last)
	}
	t.Logf("%d hits, calls %d to %d", len(all), all[0].seq, all[len(all)-1].seq)
}

// TestCommandsAreNotTraps sets and clears a second tracepoint as fast as it
// can for three seconds, under the default stop budget, while one on paced's
// tick hits 5 times a second (its traps stay far under the budget even on a
// loaded machine). Set and Clear stop the process too, and count
// against its budget, but they are not the tick line's traps: the stop
// budget must never remove tick for them.
func TestCommandsAreNotTraps(t *testing.T) {
	t.Parallel()
	b := delve.New(io.Discard)
	b.SetStopBudget(delve.RecommendedStopBudget)
	ctx, _, tg := attachTo(t, b, pacedDir, true, "-rate", "5")
	spec := func(id, marker string) fleet.Spec { return pacedSpec(t, id, marker) }
	if _, err := tg.Set(ctx, spec("tick", "tick")); err != nil {
		t.Fatal(err)
	}
	var ticks atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for h := range tg.Hits() {
			if h.Fault != nil {
				t.Errorf("fault of %s: %v", h.Tracepoint, h.Fault)
				continue
			}
			if h.Tracepoint == "tick" {
				ticks.Add(1)
			}
		}
	}()
	// tick hits (and the budget would judge its traps) before the
	// commands begin.
	agenttest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if n := ticks.Load(); n < 2 {
			return fmt.Errorf("%d hits of tick", n)
		}
		return nil
	})
	commands := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); commands += 2 {
		id := fmt.Sprintf("other%d", commands)
		if _, err := tg.Set(ctx, spec(id, "second")); err != nil {
			t.Fatal(err)
		}
		if err := tg.Clear(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// A second more of tick alone: a window that the commands left over
	// budget is judged at tick's next trap. (Its captures may all be
	// dropped meanwhile: the commands spent the budget.)
	time.Sleep(time.Second)
	if err := tg.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	t.Logf("%d commands in 3s; %d hits of tick", commands, ticks.Load())
}
