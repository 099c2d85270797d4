package fleet

// AckWindow is how many hits a publisher may have awaiting the stream's
// ack at once: additive increase, multiplicative decrease, as TCP does
// with its congestion window. It starts small, grows by an eighth (at
// least one) for each window's worth of prompt acks up to its largest,
// and halves when the stream is congested: an ack came late or never, or
// the stream refused a hit for its load.
//
// A fixed window overloads a stream that a whole fleet publishes to: with
// 1000 agents each allowed 512 in flight, the stream has half a million
// hits queued ahead of the newest, every ack comes later than its
// timeout, and the servers spend themselves on hits sent again. Cutting
// the window on a late ack, well before the timeout, keeps what the fleet
// has in flight near what the stream stores in that time.
//
// One congestion signal halves the window once: the hits sent before the
// cut would all report the same congestion, so only a hit sent after the
// last cut may cut it again. Every send is numbered by Sent for this.
//
// It is used by one goroutine, its publisher's.
type AckWindow struct {
	max, size int
	acks      int    // prompt acks since the window last grew
	sent      uint64 // sends numbered so far
	cutAt     uint64 // the number of the last send before the last cut
}

// The smallest and first windows. The smallest is one: a hit always goes,
// so that a publisher learns when the stream keeps up again, and a
// thousand publishers at their smallest have only a thousand in flight. A
// new publisher starts at a few, not at its largest: a fleet that starts
// at once must not bury the stream before the first ack says how fast it
// is.
const (
	minAckWindow   = 1
	firstAckWindow = 8
)

// NewAckWindow returns a window of at most largest hits (at least 1).
func NewAckWindow(largest int) *AckWindow {
	largest = max(largest, 1)
	return &AckWindow{max: largest, size: min(firstAckWindow, largest)}
}

// Size is how many hits may await their ack now.
func (w *AckWindow) Size() int { return w.size }

// Sent numbers one send, for its Acked or Congested.
func (w *AckWindow) Sent() uint64 {
	w.sent++
	return w.sent
}

// Acked counts the ack of send n; late says it came later than the
// publisher's target, a sign the stream has more queued than it stores
// in that time.
func (w *AckWindow) Acked(n uint64, late bool) {
	if late {
		w.Congested(n)
		return
	}
	if w.size >= w.max {
		return
	}
	if w.acks++; w.acks >= w.size {
		w.size = min(w.size+max(w.size/8, 1), w.max)
		w.acks = 0
	}
}

// Congested halves the window for send n, whose ack timed out or that the
// stream refused or found in process: unless n was sent before the last
// cut, which that cut already answered.
func (w *AckWindow) Congested(n uint64) {
	if n <= w.cutAt {
		return
	}
	w.size = max(w.size/2, minAckWindow)
	w.acks = 0
	w.cutAt = w.sent
}
