package uprobes

import (
	"testing"
	"time"
)

// TestMonoClockAt turns a time of the monotonic clock into the wall
// clock's within the error it gives, measures again only once the times
// asked for are a second past the last measure, and widens the error with
// the distance from the measure.
func TestMonoClockAt(t *testing.T) {
	var m MonoClock
	m1 := monotonicNow()
	wall := time.Now().UnixNano()
	m2 := monotonicNow()
	mono := (m1 + m2) / 2
	diff, err := m.At(mono)
	// The wall clock was read between m1 and m2: allow for that too.
	if got, slack := mono+diff, err+(m2-m1)/2+1; got < wall-slack || got > wall+slack {
		t.Fatalf("At(%d) = %d ± %d: %d as wall time, want %d ± %d", mono, diff, err, got, wall, slack)
	}
	if err <= 0 || err > int64(time.Millisecond) {
		t.Fatalf("error %d ns, want a positive one under 1 ms", err)
	}
	first := m.at

	// Within the second: no new measure, and the error grows with the
	// distance from the measure (20 ppm: 10 µs over half a second, on
	// either side of it).
	_, later := m.At(m.measured + int64(500*time.Millisecond))
	_, earlier := m.At(m.measured - int64(500*time.Millisecond))
	if m.at != first {
		t.Fatalf("measured again within the second (at %d, then %d)", first, m.at)
	}
	if want := m.err + 10_000; later != want || earlier != want {
		t.Fatalf("error half a second after and before the measure: %d and %d, want %d", later, earlier, want)
	}

	// A second past the last measure: measured again.
	m.At(first + int64(time.Second))
	if m.at == first {
		t.Fatal("not measured again a second past the last measure")
	}
}
