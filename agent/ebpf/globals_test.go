package ebpf_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
)

// TestGlobalsAsAtTheHit: a hit is decoded after the traced line ran, by
// then the program may have changed its package variables. The target
// sets stamp and limits.max to 1000+k and 2000+k, runs the marked line,
// and sets them to -k; the test has the hit decoded only after that. A
// global read by an expression is not in the probe's copy and must read
// as not captured, not as the later -k; the global that the argument c
// points to is copied by the probe at the hit and reads as it was, through
// c and through an expression.
func TestGlobalsAsAtTheHit(t *testing.T) {
	needEBPF(t)
	const dir = "testdata/targets/globals"
	p := agenttest.Start(t, agenttest.BuildTarget(t, dir))
	tgt := attach(t, ebpf.New(), p.Pid)
	set(t, tgt, agent.Tracepoint{
		ID:       "stamp",
		Location: fleet.Location{Path: "globals/main.go", Line: agenttest.MarkerLine(t, dir+"/main.go", "stamp")},
		Capture:  fleet.Capture{Args: true, Exprs: []string{"stamp", "limits.max"}},
		Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
	})
	for k := 1; k <= 2; k++ {
		release := ebpf.HoldDecoding(tgt)
		if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
			release()
			t.Fatal(err)
		}
		p.WaitOutput(t, fmt.Sprintf("STAMPED k=%d", k), 60*time.Second)
		release()
		var h agent.Hit
		select {
		case h = <-tgt.Hits():
		case <-time.After(60 * time.Second):
			t.Fatalf("no hit for k=%d in 60s", k)
		}
		if h.Fault != nil {
			t.Fatalf("tracepoint fault: %v", h.Fault)
		}
		if len(h.Exprs) != 2 {
			t.Fatalf("k=%d: expressions %+v", k, h.Exprs)
		}
		if e := h.Exprs[0]; !strings.Contains(e.Value, "not captured") || e.Unreadable == "" {
			t.Errorf("k=%d: stamp reads %q (%s), want it not captured", k, e.Value, e.Unreadable)
		}
		if e, want := h.Exprs[1], fmt.Sprint(2000+k); e.Value != want {
			t.Errorf("k=%d: limits.max, in the probe's copy through c, reads %q, want %s", k, e.Value, want)
		}
		var c *fleet.Variable
		for i := range h.Args {
			if h.Args[i].Name == "c" {
				c = &h.Args[i]
			}
		}
		if want := fmt.Sprintf("*main.config {max: %d, min: 1}", 2000+k); c == nil || c.Value != want {
			t.Errorf("k=%d: c is %+v, want %q", k, c, want)
		}
	}
}
