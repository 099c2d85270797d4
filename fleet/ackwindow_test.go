package fleet_test

import (
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// TestAckWindow halves the window on each timed-out ack down to its
// smallest, and grows it back by one per window's worth of acks up to its
// largest.
func TestAckWindow(t *testing.T) {
	w := fleet.NewAckWindow(512)
	if w.Size() != 512 {
		t.Fatalf("a new window is %d, want 512", w.Size())
	}
	for _, want := range []int{256, 128, 64, 32, 16, 8, 8} {
		w.TimedOut()
		if w.Size() != want {
			t.Fatalf("after a timeout the window is %d, want %d", w.Size(), want)
		}
	}
	// 8 acks grow it to 9, 9 more to 10.
	for range 7 {
		w.Acked()
	}
	if w.Size() != 8 {
		t.Fatalf("after 7 acks the window is %d, want 8", w.Size())
	}
	w.Acked()
	if w.Size() != 9 {
		t.Fatalf("after 8 acks the window is %d, want 9", w.Size())
	}
	for range 9 {
		w.Acked()
	}
	if w.Size() != 10 {
		t.Fatalf("after 9 more acks the window is %d, want 10", w.Size())
	}
	for range 1_000_000 {
		w.Acked()
	}
	if w.Size() != 512 {
		t.Fatalf("after many acks the window is %d, want its largest, 512", w.Size())
	}
	if w := fleet.NewAckWindow(4); func() int { w.TimedOut(); return w.Size() }() != 4 {
		t.Fatalf("a window smaller than the smallest shrank to %d, want 4", w.Size())
	}
}
