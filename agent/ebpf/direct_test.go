package ebpf_test

import (
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
)

// TestDirectDecoder traces real targets at lines with values of every kind
// a hit shows, with the capture's limits at their defaults and tight
// enough to cut strings, slices and structs short. The direct decoder must
// read most of their variables itself, and each hit it decodes is decoded
// by Delve's evaluator too, its stack read by Delve's walk, and its values
// printed by Delve's printer (the tests' VerifyStacks): a difference is a
// fault, which fails the test.
func TestDirectDecoder(t *testing.T) {
	needEBPF(t)
	tight := fleet.DefaultCapture
	tight.MaxString, tight.MaxArray, tight.MaxDepth = 3, 2, 1
	const loopDir, pacedDir = "../testdata/targets/loop", "../testdata/targets/paced"
	for _, build := range []struct {
		name  string
		flags []string
	}{{"optimized", nil}, {"noopt", []string{agenttest.NoOpt}}} {
		for _, line := range []struct {
			name, dir, marker string
			args              []string
			capture           fleet.Capture
			// quick: the line's values are all the direct decoder's, and
			// its stack is read without Delve's walk.
			quick bool
		}{
			{"values", valuesDir, "work", []string{"-every", "2ms"}, fleet.DefaultCapture, false},
			{"values-tight", valuesDir, "work", []string{"-every", "2ms"}, tight, false},
			{"loop", loopDir, "process", []string{"-every", "2ms"}, fleet.DefaultCapture, false},
			{"loop-tight", loopDir, "process", []string{"-every", "2ms"}, tight, false},
			{"paced", pacedDir, "tick", []string{"-rate", "500"}, fleet.DefaultCapture, true},
		} {
			t.Run(build.name+"/"+line.name, func(t *testing.T) {
				p := agenttest.Start(t, agenttest.BuildTarget(t, line.dir, build.flags...), line.args...)
				tgt := attach(t, ebpf.New(), p.Pid)
				set(t, tgt, agent.Tracepoint{
					ID:       "d",
					Location: fleet.Location{Path: "main.go", Line: agenttest.MarkerLine(t, line.dir+"/main.go", line.marker)},
					Capture:  line.capture,
				})
				for range 40 {
					select {
					case h := <-tgt.Hits():
						if h.Fault != nil {
							t.Fatalf("tracepoint fault: %v", h.Fault)
						}
					case <-time.After(30 * time.Second):
						t.Fatal("no hit in 30s")
					}
				}
				frames, direct, delve := ebpf.DirectReads(tgt)
				quick := ebpf.QuickStacks(tgt)
				t.Logf("%d frames: %d variables read directly, %d by Delve; %d stacks without Delve's walk", frames, direct, delve, quick)
				if frames == 0 || direct <= delve {
					t.Errorf("the direct decoder read %d frames, %d variables itself and %d through Delve: want most of them itself", frames, direct, delve)
				}
				if line.quick && (delve > 0 || quick == 0) {
					t.Errorf("%d variables read through Delve and %d stacks without its walk: want none and some", delve, quick)
				}
			})
		}
	}
}
