package fleet_test

import (
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// TestAckWindow starts small, grows by an eighth per window's worth of
// prompt acks up to its largest, halves once per congestion down to one,
// however many hits sent before the cut report it.
func TestAckWindow(t *testing.T) {
	w := fleet.NewAckWindow(512)
	if w.Size() != 8 {
		t.Fatalf("a new window is %d, want 8", w.Size())
	}
	send := func(n int) []uint64 {
		var out []uint64
		for range n {
			out = append(out, w.Sent())
		}
		return out
	}
	// 8 prompt acks grow it to 9, 9 more to 10.
	for i, n := range send(17) {
		w.Acked(n, false)
		want := 8
		if i >= 7 {
			want = 9
		}
		if i >= 16 {
			want = 10
		}
		if w.Size() != want {
			t.Fatalf("after %d acks the window is %d, want %d", i+1, w.Size(), want)
		}
	}
	for _, n := range send(1_000_000) {
		w.Acked(n, false)
	}
	if w.Size() != 512 {
		t.Fatalf("after many acks the window is %d, want its largest, 512", w.Size())
	}

	// A window in flight reports its congestion: one cut.
	before := send(512)
	for _, n := range before {
		w.Congested(n)
	}
	if w.Size() != 256 {
		t.Fatalf("after a window of timeouts the window is %d, want 256", w.Size())
	}
	// A late ack of a hit sent after the cut cuts again; the rest of
	// that window, sent before it, does not.
	after := send(256)
	w.Acked(after[0], true)
	for _, n := range after[1:] {
		w.Acked(n, true)
	}
	if w.Size() != 128 {
		t.Fatalf("after a window of late acks the window is %d, want 128", w.Size())
	}
	for range 20 {
		w.Congested(w.Sent())
	}
	if w.Size() != 1 {
		t.Fatalf("after many cuts the window is %d, want its smallest, 1", w.Size())
	}
	if w := fleet.NewAckWindow(4); w.Size() != 4 {
		t.Fatalf("a window of at most 4 starts at %d, want 4", w.Size())
	}
}
