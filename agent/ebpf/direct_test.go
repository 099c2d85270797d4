package ebpf_test

import (
	"testing"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
)

// TestDirectDecoder traces the values target, whose traced line has a
// variable of every kind a hit shows, with the capture's limits at their
// defaults and tight enough to cut strings, slices and structs short. The
// direct decoder must read most of its variables itself, and each hit it
// decodes is decoded by Delve's evaluator too (the tests' verifyStacks):
// a value that differs is a fault.
func TestDirectDecoder(t *testing.T) {
	needEBPF(t)
	tight := fleet.DefaultCapture
	tight.MaxString, tight.MaxArray, tight.MaxDepth = 3, 2, 1
	for _, build := range []struct {
		name  string
		flags []string
	}{{"optimized", nil}, {"noopt", []string{agenttest.NoOpt}}} {
		for _, capture := range []struct {
			name string
			c    fleet.Capture
		}{{"default", fleet.DefaultCapture}, {"tight", tight}} {
			t.Run(build.name+"/"+capture.name, func(t *testing.T) {
				p := agenttest.Start(t, agenttest.BuildTarget(t, valuesDir, build.flags...), "-every", "2ms")
				tgt := attach(t, ebpf.New(), p.Pid)
				spec := workSpec(t, "w")
				spec.Capture = capture.c
				set(t, tgt, spec)
				hits := make(map[string]fleet.Hit)
				for len(hits) < 20 {
					byN(t, tgt.Hits(), hits)
				}
				frames, direct, delve := ebpf.DirectReads(tgt)
				t.Logf("%d frames: %d variables read directly, %d by Delve", frames, direct, delve)
				if frames == 0 || direct <= delve {
					t.Fatalf("the direct decoder read %d frames, %d variables itself and %d through Delve: want most of them itself", frames, direct, delve)
				}
			})
		}
	}
}
