package delve_test

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
)

const droppedDir = "../ebpf/testdata/targets/dropped"

// TestDroppedConditionInt3: with Delve's breakpoints, where Delve itself
// evaluates the condition, a condition that reads a part the compiler left
// out at the line (p.b at pair's, the capacity of xs at slice's) is refused
// at Set rather than decided on the zero Delve reads there; one that reads
// only what is kept (p.a) is installed and filters hits. The eBPF
// package's TestDroppedCondition holds the uprobe mode to the same.
func TestDroppedConditionInt3(t *testing.T) {
	ctx, _, tg := attachTo(t, delve.NewInt3(io.Discard), droppedDir, false)
	at := func(marker string) fleet.Location {
		return fleet.Location{Path: "dropped/main.go", Line: agenttest.MarkerLine(t, droppedDir+"/main.go", marker)}
	}
	for _, c := range []struct{ marker, cond, operand string }{
		{"pair", "p.b == 0", "p.b"},
		{"slice", "cap(xs) == 3", "xs"},
	} {
		_, err := tg.Set(ctx, agent.Tracepoint{ID: "bad", Location: at(c.marker), Condition: c.cond})
		fe := fleet.AsError(err)
		if err == nil || fe.Code != fleet.CodeBadCondition || !strings.Contains(fe.Message, "reads "+c.operand+",") || !strings.Contains(fe.Message, "-gcflags=all=-N -l") {
			t.Fatalf("setting the condition %q at %s: %v, want it refused as reading %s", c.cond, c.marker, err, c.operand)
		}
	}
	if _, err := tg.Set(ctx, agent.Tracepoint{ID: "good", Location: at("pair"), Condition: "p.a % 2 == 0", Capture: fleet.Capture{Args: true},
		Limits: fleet.Limits{MaxHitsPerSecond: 1000}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(90 * time.Second)
	for i := 0; i < 3; i++ {
		var h agent.Hit
		select {
		case h = <-tg.Hits():
		case <-deadline:
			t.Fatalf("%d hits of p.a %% 2 == 0 in 90s, want 3", i)
		}
		if h.Fault != nil {
			t.Fatalf("tracepoint fault: %v", h.Fault)
		}
		if len(h.Args) != 1 || h.Args[0].Name != "k" {
			t.Fatalf("hit %d has args %+v, want k", i+1, h.Args)
		}
		if k, err := strconv.Atoi(h.Args[0].Value); err != nil || k%2 != 0 {
			t.Fatalf("hit %d has k = %q, want an even k", i+1, h.Args[0].Value)
		}
	}
}

// TestDroppedConditionInlined: at the line of an inlined call, Set cannot
// tell from DWARF alone whether a condition reads a part the compiler left
// out there (p.b at inlined's); the first stop there does. In int3 mode
// Delve evaluates a condition in its own stop, on the zero it reads for
// p.b: p.b > 6, true at every call, would hide every hit, and none would
// come back to be checked. The condition is refused at that first stop
// instead, with the part named. One on the part kept (p.a) filters hits,
// its hit condition counted as Delve counts it: every other odd k. In
// both modes.
func TestDroppedConditionInlined(t *testing.T) {
	for _, mode := range []string{"int3", "uprobe"} {
		t.Run(mode, func(t *testing.T) {
			b := delve.New(io.Discard)
			if mode == "int3" {
				b = delve.NewInt3(io.Discard)
			}
			ctx, _, tg := attachTo(t, b, droppedDir, false)
			loc := fleet.Location{Path: "dropped/main.go", Line: agenttest.MarkerLine(t, droppedDir+"/main.go", "inlined")}
			limits := fleet.Limits{MaxHitsPerSecond: 1000}
			if _, err := tg.Set(ctx, agent.Tracepoint{ID: "bad", Location: loc, Condition: "p.b > 6", Capture: fleet.Capture{Args: true}, Limits: limits}); err != nil {
				t.Fatalf("setting p.b > 6 at an inlined call: %v, want it left to the first stop", err)
			}
			select {
			case h := <-tg.Hits():
				if h.Fault == nil {
					t.Fatalf("a hit shown: %+v", h.Hit)
				}
				fe := fleet.AsError(h.Fault)
				if fe.Code != fleet.CodeBadCondition || !strings.Contains(fe.Message, "reads p.b,") || !strings.Contains(fe.Message, "optimized away") || !strings.Contains(fe.Message, "-gcflags=all=-N -l") {
					t.Fatalf("fault %v, want the condition refused as reading p.b", h.Fault)
				}
			case <-time.After(90 * time.Second):
				t.Fatal("neither a hit nor a fault in 90s: the condition was decided on the zero read for p.b")
			}

			if _, err := tg.Set(ctx, agent.Tracepoint{ID: "good", Location: loc, Condition: "p.a % 2 == 1", HitCondition: "% 2", Capture: fleet.Capture{Args: true}, Limits: limits}); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(90 * time.Second)
			var first uint64
			for i := 0; i < 6; i++ {
				var h agent.Hit
				select {
				case h = <-tg.Hits():
				case <-deadline:
					t.Fatalf("%d hits of p.a %% 2 == 1 in 90s, want 6", i)
				}
				if h.Fault != nil {
					t.Fatalf("tracepoint fault: %v", h.Fault)
				}
				if h.DropsOnly {
					continue
				}
				k := agenttest.ArgUint(t, h.Hit, "k")
				if i == 0 {
					first = k
				}
				// Dropped hits leave gaps of a multiple of 4.
				if k%2 != 1 || (k-first)%4 != 0 {
					t.Fatalf("hit %d has k = %d after a first of %d, want every other odd k", i+1, k, first)
				}
			}
		})
	}
}
