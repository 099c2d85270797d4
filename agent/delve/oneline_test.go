package delve_test

import (
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestTwoTracepointsOneLine sets two tracepoints on one line: each takes
// every run of it. With uprobes a thread keeps one record of its last
// probe, and every probe on the instruction overwrites it, so the
// tracepoint set first once never saw a hit.
func TestTwoTracepointsOneLine(t *testing.T) {
	t.Parallel()
	ctx, p, tg := attachTo(t, nil, pacedDir, false, "-rate", "50")
	for _, id := range []string{"first", "second"} {
		if _, err := tg.Set(ctx, pacedSpec(t, id, "tick")); err != nil {
			t.Fatal(err)
		}
	}
	// The runs each saw, by seq: once both have seen ten runs that the
	// other saw too, each takes every run.
	seen := map[string]map[string]bool{"first": {}, "second": {}}
	both := func() int {
		n := 0
		for seq := range seen["first"] {
			if seen["second"][seq] {
				n++
			}
		}
		return n
	}
	deadline := time.After(time.Minute)
	for both() < 10 {
		select {
		case h, ok := <-tg.Hits():
			if !ok {
				t.Fatalf("the hit channel closed\n%s", p.Stderr())
			}
			if h.Fault != nil {
				t.Fatalf("fault: %v", h.Fault)
			}
			if h.DropsOnly {
				continue
			}
			if seen[h.Tracepoint] == nil {
				t.Fatalf("a hit of tracepoint %q", h.Tracepoint)
			}
			seen[h.Tracepoint][fleettest.Var(h.Exprs, "seq").Value] = true
		case <-deadline:
			t.Fatalf("within a minute, %d runs seen by the first tracepoint and %d by the second, %d by both; want 10 by both", len(seen["first"]), len(seen["second"]), both())
		}
	}
}
