package ebpf_test

import (
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/ebpf"
)

// TestTrapCost: the calibration probe fires at each call of its function
// (measureTrap checks the count), and a call with it costs a trap: far
// more than one without it, which costs nanoseconds.
func TestTrapCost(t *testing.T) {
	needEBPF(t)
	probed, bare, err := ebpf.TrapCost(10, 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a call costs %v with the probe, %v without", probed, bare)
	if probed < 20*bare || probed < 200*time.Nanosecond {
		t.Fatalf("a call costs %v with the probe, %v without: no trap measured", probed, bare)
	}
	// What the agent's metrics serve (riptrace_ebpf_trap_seconds).
	if c, ok := ebpf.MeasuredTrap(); !ok || c != probed {
		t.Fatalf("MeasuredTrap says %v (%v), want %v", c, ok, probed)
	}
}
