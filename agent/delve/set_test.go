package delve_test

import (
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestReplaceFails replaces a hitting tracepoint with a spec for a line
// with no code: Set fails saying so, and the old tracepoint goes on hitting
// with its own capture, as with the eBPF backend.
func TestReplaceFails(t *testing.T) {
	t.Parallel()
	ctx, _, tg := attachTo(t, nil, pacedDir, true, "-rate", "200")
	spec := pacedSpec(t, "tick", "tick")
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	bad := spec
	bad.Location.Line = 1 // a comment
	bad.Capture = fleet.Capture{Args: true}
	_, err := tg.Set(ctx, bad)
	if err == nil || fleet.AsError(err).Code != fleet.CodeNoCode {
		t.Fatalf("replacing with a line of no code: %v, want %s", err, fleet.CodeNoCode)
	}
	for n := 0; n < 5; {
		select {
		case h := <-tg.Hits():
			if h.Fault != nil {
				t.Fatalf("fault: %v", h.Fault)
			}
			if v := fleettest.Var(h.Exprs, "seq"); h.Tracepoint != "tick" || v.Value == "" {
				t.Fatalf("hit %+v, want tick's with seq", h.Hit)
			}
			n++
		case <-time.After(10 * time.Second):
			t.Fatal("the old tracepoint stopped hitting after a failed replacement")
		}
	}
}

// TestReplaceFailsKeepsCounts: the tracepoint a failed replacement leaves
// keeps its hit count, which its hit condition reads: "<= 3" has had its 3
// hits, and gives no more after the failed replacement.
func TestReplaceFailsKeepsCounts(t *testing.T) {
	t.Parallel()
	ctx, _, tg := attachTo(t, nil, pacedDir, true, "-rate", "200")
	spec := pacedSpec(t, "tick", "tick")
	spec.HitCondition = "<= 3"
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case h := <-tg.Hits():
			if h.Fault != nil {
				t.Fatalf("fault: %v", h.Fault)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("fewer than 3 hits")
		}
	}
	bad := spec
	bad.Location.Line = 1
	if _, err := tg.Set(ctx, bad); err == nil {
		t.Fatal("replacing with a line of no code succeeded")
	}
	select {
	case h := <-tg.Hits():
		t.Fatalf("a hit after the hit condition's 3 (its count started over?): %+v", h.Hit)
	case <-time.After(time.Second): // 200 calls
	}
}
