package ebpf

import (
	"fmt"
	"testing"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// TestCompileCond: comparisons of an integer variable with a constant go to
// the BPF program, at every PC of the line, optimized or not; anything else
// stays with the agent.
func TestCompileCond(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("eBPF is not available here: %v", err)
	}
	const dir = "testdata/targets/values"
	line := agenttest.MarkerLine(t, dir+"/main.go", "work")
	for _, flags := range [][]string{nil, {agenttest.NoOpt}} {
		p := agenttest.Start(t, agenttest.BuildTarget(t, dir, flags...), "-every", "0")
		tgt, err := newTarget(p.Pid, "/proc/"+itoa(p.Pid)+"/exe")
		if err != nil {
			t.Fatal(err)
		}
		file, err := agent.ResolveFile(tgt.snap.BinInfo().Sources, fleet.Location{Path: "main.go", Line: line})
		if err != nil {
			t.Fatal(err)
		}
		pcs, err := proc.FindFileLocation(tgt.snap, file, line)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			cond string
			op   uint8
		}{
			{"n < 1000005", condLT},
			{"(7 <= n)", condGE},
			{"gid == -1", condEQ},
			{"n+1 < 5", condNone},
			{"name == \"item-1\"", condNone},
			{"ratio > 1", condNone},
			{"nosuch > 1", condNone},
		} {
			for _, pc := range pcs {
				pl := &planner{bi: tgt.snap.BinInfo(), di: tgt.di, capture: fleet.DefaultCapture, cond: c.cond}
				plan, err := pl.plan(pc, line)
				if err != nil {
					t.Fatal(err)
				}
				if plan.Cond.Op != c.op {
					t.Errorf("%v: %q at pc %#x compiled to op %d, want %d", flags, c.cond, pc, plan.Cond.Op, c.op)
				}
			}
		}
		tgt.close(nil)
		<-tgt.done
	}
}

func itoa(n int) string {
	return fmt.Sprint(n)
}
