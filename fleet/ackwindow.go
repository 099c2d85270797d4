package fleet

// AckWindow is how many hits a publisher may have awaiting the stream's
// ack at once. It shrinks by half when an ack times out and grows back by
// an eighth (at least one) for each window's worth of acks, up to its
// maximum: from the smallest to 512 in about 35 windows.
//
// A fixed window overloads a stream that a whole fleet publishes to: with
// 1000 agents each allowed 512 in flight, the stream has half a million
// hits queued ahead of the newest, every ack comes later than its
// timeout, every agent sends everything again, and the stream spends
// itself storing duplicates. Halving on a timeout brings what the fleet
// has in flight down to what the stream acknowledges within the timeout.
//
// It is used by one goroutine, its publisher's.
type AckWindow struct {
	max, size int
	acks      int // acks since the window last grew
}

// minAckWindow is the smallest window: a few hits always go, so that a
// publisher learns when the stream keeps up again.
const minAckWindow = 8

// NewAckWindow returns a window of largest hits, its largest (at least 1).
func NewAckWindow(largest int) *AckWindow {
	largest = max(largest, 1)
	return &AckWindow{max: largest, size: largest}
}

// Size is how many hits may await their ack now.
func (w *AckWindow) Size() int { return w.size }

// Acked counts one ack.
func (w *AckWindow) Acked() {
	if w.size >= w.max {
		return
	}
	if w.acks++; w.acks >= w.size {
		w.size = min(w.size+max(w.size/8, 1), w.max)
		w.acks = 0
	}
}

// TimedOut halves the window: an ack came later than its timeout.
func (w *AckWindow) TimedOut() {
	w.size = max(w.size/2, min(minAckWindow, w.max))
	w.acks = 0
}
