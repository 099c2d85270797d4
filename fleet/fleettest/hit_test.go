package fleettest_test

import (
	"testing"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestRealisticHitSize: the benchmarks' hit is the size they ask for once
// encoded, down to what its variables need.
func TestRealisticHitSize(t *testing.T) {
	for _, size := range []int{1024, 4096, 64 << 10} {
		h := fleettest.RealisticHit("load", "sim-0001", 417, size)
		if got := len(fleet.Encode(&h)); got != size {
			t.Errorf("RealisticHit of %d bytes encodes to %d", size, got)
		}
	}
}
