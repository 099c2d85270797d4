package agent

import "sync/atomic"

// Transit follows a process's hits from its backend to the stream, for the
// agent's watermarks (see heldSince). The backend counts each hit as it
// sends it (Sending, before the send), the agent each once it has queued it
// for the stream (Taken). Between the two a hit waits in channels and in
// goroutines that a loaded machine can leave unscheduled for a second or
// more: the eBPF decoder's thread, niced, wakes the goroutine that takes
// the hit on its own processor, and starved by the scheduler keeps it
// there. Neither the decoder (it has delivered the hit) nor the agent (it
// has not received it) held the watermarks back meanwhile: a stressed run
// saw hits arrive behind a watermark that promised them, and a scenario
// judged without them. Counted from before the send to after the queue,
// a hit holds the watermarks back however long it waits.
//
// A Transit is safe for concurrent use; a nil one counts nothing.
type Transit struct {
	in      atomic.Int64 // hits sent, not yet taken or dropped
	takenAt atomic.Int64 // capture time of the last hit taken
	firstAt atomic.Int64 // capture time of the first hit sent
}

// Follower is a Target whose backend counts its hits on a Transit: the
// agent hands it one as it attaches.
type Follower interface {
	Follow(*Transit)
}

// Sending counts a hit captured at captured (wall, ns) as it is about to
// be sent.
func (tr *Transit) Sending(captured int64) {
	if tr == nil {
		return
	}
	tr.firstAt.CompareAndSwap(0, captured)
	tr.in.Add(1)
}

// Dropped uncounts a hit Sending counted that will never arrive (the
// target closed before it was sent).
func (tr *Transit) Dropped() {
	if tr != nil {
		tr.in.Add(-1)
	}
}

// Taken uncounts a hit captured at captured (wall, ns), queued for the
// stream.
func (tr *Transit) Taken(captured int64) {
	if tr == nil {
		return
	}
	if captured != 0 {
		tr.takenAt.Store(captured)
	}
	tr.in.Add(-1)
}

// Oldest returns a time no later than the capture of any hit in transit,
// 0 if none is. The hits of one backend leave in the order of capture,
// give or take transitSlack: those in transit came after the last taken,
// or are the first.
func (tr *Transit) Oldest() int64 {
	if tr == nil || tr.in.Load() <= 0 {
		return 0
	}
	if t := tr.takenAt.Load(); t != 0 {
		return t - int64(transitSlack)
	}
	return tr.firstAt.Load()
}
