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
