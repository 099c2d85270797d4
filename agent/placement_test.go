package agent

import (
	"strings"
	"sync"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// A test per transition of a placement's lifecycle (placement.go).

func testPlacement(maxHits int) *placement {
	return newPlacement(&fleet.Spec{ID: "tp", Location: fleet.Location{Path: "a.go", Line: 1}, Limits: fleet.Limits{MaxHits: maxHits}}, "")
}

func hit(n int) *Hit { return &Hit{Hit: fleet.Hit{Tracepoint: "tp", Line: n}} }

// begin, hold: while Set runs, hits wait and the status waits too.
func TestPlacementHolds(t *testing.T) {
	p := testPlacement(0)
	if act, _, _ := p.accept(hit(1)); act != hitHeld {
		t.Fatalf("a hit while installing: %v, want held", act)
	}
	if v := p.view(); !v.installing || v.hits != 0 {
		t.Fatalf("view %+v, want installing with no hit counted", v)
	}
	if _, ok := p.next(); ok {
		t.Fatal("next released a held hit before commit")
	}
}

// hold, past its bound: the hit is counted as dropped, and the next hit
// that leaves reports it.
func TestPlacementHoldBound(t *testing.T) {
	p := testPlacement(0)
	for i := range maxEarly {
		p.accept(hit(i))
	}
	act, _, dropped := p.accept(hit(maxEarly))
	if act != hitHeld || dropped != 1 {
		t.Fatalf("a hit past the bound: %v, %d dropped; want held, 1 dropped", act, dropped)
	}
	p.commit(Placement{Function: "main.f"})
	c, ok := p.next()
	if !ok || c.hit.Line != 0 || c.hit.Dropped != 1 || c.own != 0 {
		t.Fatalf("first released hit: %+v, %v; want line 0 carrying the 1 dropped", c, ok)
	}
}

// commit: held hits leave first, in order, then hits leave as they come.
func TestPlacementCommitReleasesInOrder(t *testing.T) {
	p := testPlacement(0)
	p.accept(hit(1))
	p.accept(hit(2))
	p.commit(Placement{Function: "main.f"})
	for want := 1; want <= 2; want++ {
		c, ok := p.next()
		if !ok || c.hit.Line != want {
			t.Fatalf("next: %+v, %v; want line %d", c.hit, ok, want)
		}
	}
	if _, ok := p.next(); ok {
		t.Fatal("next after the held hits")
	}
	if v := p.view(); v.installing || v.hits != 2 || v.pl.Function != "main.f" {
		t.Fatalf("view %+v, want installed in main.f with 2 hits", v)
	}
	if act, c, _ := p.accept(hit(3)); act != hitPublished || c.hit.Line != 3 {
		t.Fatalf("a hit after commit: %v %+v, want published", act, c.hit)
	}
}

// commit: a held hit handed out to leave still holds the watermarks back
// until it is offered, as it did while held; those after it too.
func TestPlacementReleasingHoldsWatermarks(t *testing.T) {
	p := testPlacement(0)
	for i, at := range []int64{100, 200} {
		h := hit(i + 1)
		h.Time = at
		p.accept(h)
	}
	p.commit(Placement{Function: "main.f"})
	if got := p.oldestHeld(); got != 100 {
		t.Fatalf("held before release: oldest %d, want 100", got)
	}
	c, ok := p.next()
	if !ok || c.hit.Time != 100 {
		t.Fatalf("next: %+v, %v; want the hit of 100", c.hit, ok)
	}
	// Handed out, not offered yet: publish may still be on its way.
	c.hit.Time += 5 // as publish moves it by the clock's skew
	if got := p.oldestHeld(); got != 100 {
		t.Fatalf("while the first is on its way: oldest %d, want 100", got)
	}
	p.released()
	if got := p.oldestHeld(); got != 200 {
		t.Fatalf("once it is offered: oldest %d, want 200", got)
	}
	p.next()
	p.released()
	if _, ok := p.next(); ok {
		t.Fatal("next after the held hits")
	}
	if got := p.oldestHeld(); got != 0 {
		t.Fatalf("all released: oldest %d, want 0", got)
	}
}

// commit, with hits coming all the while from the pump: every hit leaves
// once, in the order it came.
func TestPlacementCommitRace(t *testing.T) {
	for range 50 {
		p := testPlacement(0)
		var mu sync.Mutex
		var out []int
		publish := func(c counted) {
			mu.Lock()
			out = append(out, c.hit.Line)
			mu.Unlock()
		}
		const n = 500
		first := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // the pump, one goroutine as in the agent
			for i := range n {
				if act, c, _ := p.accept(hit(i)); act == hitPublished {
					publish(c)
				}
				if i == 0 {
					close(first) // one hit taken before Set returns, for sure
				}
			}
		})
		<-first
		p.commit(Placement{})
		for { // place
			c, ok := p.next()
			if !ok {
				break
			}
			publish(c)
		}
		wg.Wait()
		if len(out) != n {
			t.Fatalf("%d hits left, want %d", len(out), n)
		}
		for i, line := range out {
			if line != i {
				t.Fatalf("hit %d left as the %dth: %v", line, i, out)
			}
		}
	}
}

// fail: Set failed, so the held hits are dropped, and so is every later one.
func TestPlacementFail(t *testing.T) {
	p := testPlacement(0)
	p.accept(hit(1))
	p.fail(fleet.Errorf(fleet.CodeNotManaged, "denied"))
	if _, ok := p.next(); ok {
		t.Fatal("a held hit of a failed placement was released")
	}
	if act, _, _ := p.accept(hit(2)); act != hitDropped {
		t.Fatalf("a hit after fail: %v, want dropped", act)
	}
	if v := p.view(); v.installing || v.active() || v.err.Code != fleet.CodeNotManaged {
		t.Fatalf("view %+v, want failed", v)
	}
}

// fail by a fault while Set runs: hits taken before it still leave once Set
// returns; none after it.
func TestPlacementFaultWhileInstalling(t *testing.T) {
	p := testPlacement(0)
	p.accept(hit(1))
	if act, _, _ := p.accept(&Hit{Hit: fleet.Hit{Tracepoint: "tp"}, Fault: fleet.Errorf(fleet.CodeBadCondition, "bad")}); act != hitFaulted {
		t.Fatalf("a fault: %v, want faulted", act)
	}
	if act, _, _ := p.accept(hit(2)); act != hitDropped {
		t.Fatalf("a hit after the fault: %v, want dropped", act)
	}
	p.commit(Placement{})
	if c, ok := p.next(); !ok || c.hit.Line != 1 {
		t.Fatalf("the hit taken before the fault: %+v, %v; want it released", c.hit, ok)
	}
	if _, ok := p.next(); ok {
		t.Fatal("more than the hit taken before the fault")
	}
	if v := p.view(); v.err == nil || v.err.Code != fleet.CodeBadCondition {
		t.Fatalf("view %+v, want the fault", v)
	}
}

// done: the hit that reaches maxHits says so, and no hit leaves after it,
// held or not.
func TestPlacementDone(t *testing.T) {
	p := testPlacement(2)
	for i := 1; i <= 3; i++ {
		p.accept(hit(i))
	}
	p.commit(Placement{PCs: []uint64{1}})
	if c, ok := p.next(); !ok || c.reachedMax {
		t.Fatalf("first: %+v %v", c, ok)
	}
	if c, ok := p.next(); !ok || !c.reachedMax {
		t.Fatalf("second: %+v %v, want it to reach maxHits", c, ok)
	}
	if _, ok := p.next(); ok {
		t.Fatal("a held hit left after maxHits")
	}
	if act, _, _ := p.accept(hit(4)); act != hitDropped {
		t.Fatalf("a hit after maxHits: %v, want dropped", act)
	}
	v := p.view()
	if v.done != "maxHits (2) reached" || v.hits != 2 || v.active() {
		t.Fatalf("view %+v, want done after 2 hits", v)
	}
	p.cleared()
	if p.view().pl.PCs != nil {
		t.Fatal("cleared left the PCs")
	}
}

// lose and halt: a hit lost on its way is reported by the next one; a
// halted placement takes no more hits.
func TestPlacementLoseAndHalt(t *testing.T) {
	p := testPlacement(0)
	p.commit(Placement{})
	p.next()
	p.lose(2)
	if _, c, _ := p.accept(hit(1)); c.hit.Dropped != 3 || c.own != 0 {
		t.Fatalf("the hit after a loss carries %d dropped (%d its own), want 3 (0)", c.hit.Dropped, c.own)
	}
	if v := p.view(); v.lost != 1 {
		t.Fatalf("lost %d, want 1", v.lost)
	}
	p.halt()
	if act, _, _ := p.accept(hit(2)); act != hitDropped {
		t.Fatalf("a hit after halt: %v, want dropped", act)
	}
}

// count, with estimates: the estimates of the hits run with the probes out
// add up, and the put-backs that had none are counted beside them, the sum
// of the others being no estimate of all.
func TestPlacementUnestimated(t *testing.T) {
	p := testPlacement(0)
	p.commit(Placement{Function: "main.f"})
	if _, ok := p.next(); ok {
		t.Fatal("a hit held with none accepted")
	}
	h := hit(1)
	h.Dropped, h.Uncounted.N = 2, 100
	p.accept(h)
	if v := p.view(); v.uncounted != 100 || v.unestimated != 0 {
		t.Fatalf("view %+v, want 100 estimated", v)
	}
	h = hit(2)
	h.Dropped, h.Uncounted.Unknown = 3, true
	act, c, _ := p.accept(h)
	if act != hitPublished || !c.uncounted.Unknown {
		t.Fatalf("a hit with no estimate: %v, %+v; want published, saying so", act, c)
	}
	h = hit(3)
	h.Uncounted.N = 50
	p.accept(h)
	if v := p.view(); v.uncounted != 150 || v.unestimated != 1 || v.dropped != 5 {
		t.Fatalf("view %+v, want 150 estimated, 5 dropped, and a put-back with none", v)
	}
}

// count, with an estimate waiting: the hits that say an estimate waits to
// be confirmed leave the drops a lower bound with none for as long as they
// say so, and no longer.
func TestPlacementWaiting(t *testing.T) {
	p := testPlacement(0)
	p.commit(Placement{Function: "main.f"})
	p.next()
	h := hit(1)
	h.Dropped, h.Waiting = 1, true
	p.accept(h)
	if v := p.view(); !v.waiting || v.unestimated != 0 {
		t.Fatalf("view %+v, want an estimate waiting", v)
	}
	h = hit(2)
	h.Uncounted.N = 70
	p.accept(h)
	if v := p.view(); v.waiting || v.unestimated != 0 || v.uncounted != 70 {
		t.Fatalf("view %+v, want 70 estimated, none waiting", v)
	}
}

// A status's drops: a put-back with no estimate (a line gone quiet while
// the probes were out, say) leaves the estimate of the others standing,
// marked as leaving it out, and the message of each report says what that
// report's put-backs had.
func TestPlacementDroppedStatus(t *testing.T) {
	p := testPlacement(0)
	p.commit(Placement{Function: "main.f"})
	p.next()
	status := func() (fleet.Status, string) {
		v := p.view()
		st := fleet.Status{Dropped: v.dropped}
		v.droppedStatus(&st)
		return st, v.throttled(v.dropped-v.droppedSeen, "by maxHitsPerSecond=5")
	}
	h := hit(1)
	h.Dropped, h.Uncounted.N = 2, 100
	p.accept(h)
	st, msg := status()
	if !st.DroppedLowerBound || st.DroppedEstimate != 102 || st.DroppedUnestimated != 0 || !strings.Contains(msg, "at least 2 hits dropped by maxHitsPerSecond=5 since the last report, an estimated 102 (") {
		t.Fatalf("an estimate: %+v, %q", st, msg)
	}
	p.seen()
	h = hit(2) // the notice of a line gone quiet
	h.DropsOnly, h.Dropped, h.Uncounted.Unknown = true, 3, true
	p.accept(h)
	st, msg = status()
	if !st.DroppedLowerBound || st.DroppedEstimate != 105 || st.DroppedUnestimated != 1 || !strings.Contains(msg, "at least 3 hits dropped by maxHitsPerSecond=5 since the last report (") || !strings.Contains(msg, "nor estimated") {
		t.Fatalf("a put-back with no estimate after one with: %+v, %q", st, msg)
	}
	p.seen()
	h = hit(3)
	h.Dropped, h.Uncounted.N = 4, 40
	p.accept(h)
	h = hit(4)
	h.Dropped, h.Uncounted.Unknown = 1, true
	p.accept(h)
	st, msg = status()
	if st.DroppedEstimate != 150 || st.DroppedUnestimated != 2 || !strings.Contains(msg, "at least 5 hits dropped by maxHitsPerSecond=5 since the last report, an estimated 45, and more that 1 of its put-backs could not estimate") {
		t.Fatalf("both in one report: %+v, %q", st, msg)
	}

	// With none estimated at all, the count is a lower bound alone.
	q := testPlacement(0)
	q.commit(Placement{Function: "main.f"})
	q.next()
	h = hit(1)
	h.Dropped, h.Uncounted.Unknown = 7, true
	q.accept(h)
	v := q.view()
	st = fleet.Status{Dropped: v.dropped}
	v.droppedStatus(&st)
	if !st.DroppedLowerBound || st.DroppedEstimate != 0 || st.DroppedUnestimated != 1 {
		t.Fatalf("no estimate: %+v", st)
	}
}
