package fleet

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"
)

// TimelineReader reads the hit stream through a Timeline: hits come out in
// the order they ran (see Timeline), the same for every reader.
type TimelineReader struct {
	r  *HitReader
	tl *Timeline
	// Notice, if set, receives what the timeline says about its agents.
	Notice func(string)

	out      []Placed
	lastMsg  time.Time // when the last message was read, on this machine
	lastTime time.Time // its ServerTime
}

// quietAfter is how long the reader waits for a message, holding hits,
// before it asks the server whether the stream is quiet (see quiet).
// Agents speak at least every WatermarkKeepalive, so a quiet stream means
// they are idle, all gone or cut off, or a replay reached the end.
// quietMargin is the time a message stored just as the server answered
// may take to count, and the difference between the clocks of the
// servers of a cluster; caughtUpWait is how long the reader waits for the
// answer.
const (
	quietAfter   = 250 * time.Millisecond
	quietMargin  = 50 * time.Millisecond
	caughtUpWait = 2 * time.Second
)

// Timeline opens a reader of the hit stream that places hits in the order
// they ran.
func (c *Client) Timeline(ctx context.Context, opts HitOptions, topts TimelineOptions) (*TimelineReader, error) {
	r, err := c.Hits(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &TimelineReader{r: r, tl: NewTimeline(topts)}, nil
}

// Next returns the next hit in the timeline. Errors are those of
// HitReader.Next: a malformed message comes back as an *Error and the
// reader stays usable.
func (tr *TimelineReader) Next(ctx context.Context) (Placed, error) {
	for len(tr.out) == 0 {
		wait := quietAfter
		if tr.tl.Held() == 0 {
			wait = time.Hour // nothing to release: no need to wake
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		h, w, err := tr.r.NextMessage(rctx)
		cancel()
		switch {
		case err == nil && w != nil:
			tr.seen(w.ServerTime)
			tr.out = tr.tl.AddWatermark(*w)
		case err == nil:
			tr.seen(h.ServerTime)
			tr.out = tr.tl.AddHit(h)
		case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			if !tr.lastMsg.IsZero() {
				tr.out = tr.quiet(ctx)
			}
		case errors.Is(err, io.EOF):
			// The end of a replay: what waits goes out, in order.
			tr.out = tr.tl.Flush()
			if len(tr.out) == 0 {
				return Placed{}, io.EOF
			}
		default:
			return Placed{}, err
		}
		tr.notices()
	}
	p := tr.out[0]
	tr.out = tr.out[1:]
	return p, nil
}

// quiet moves the timeline's time on while no message comes, so that the
// hits held for a stream time that no message brings go out. It moves it
// only as far as the stream has gone: if the server says the reader has
// read all the stream holds, to when the server said so (less
// quietMargin), and never past what passed here since the last message.
// A message then read is stored later than that, so a replay, which
// places it on its own stream time, decides as this reader did: the
// timeline stays a function of the stream. If the server says messages
// are on their way (the reader is slow, not the stream quiet), it waits
// for them. If the server cannot say, the reader goes by its own clock
// alone, and a hit still on its way may come late for it and not for a
// replay.
func (tr *TimelineReader) quiet(ctx context.Context) []Placed {
	to := tr.lastTime.Add(time.Since(tr.lastMsg) - quietMargin)
	cctx, cancel := context.WithTimeout(ctx, caughtUpWait)
	ok, at, err := tr.r.CaughtUp(cctx)
	cancel()
	switch {
	case err != nil:
	case !ok:
		return nil
	case at.Add(-quietMargin).Before(to):
		to = at.Add(-quietMargin)
	}
	return tr.tl.Advance(to)
}

func (tr *TimelineReader) seen(st time.Time) {
	tr.lastMsg, tr.lastTime = time.Now(), st
}

func (tr *TimelineReader) notices() {
	for _, n := range tr.tl.Notices() {
		if tr.Notice != nil {
			tr.Notice(n)
		}
	}
}

// Flush returns the hits still held, in order, and forgets them: a reader
// that stops (trace --for) shows them before it goes.
func (tr *TimelineReader) Flush() []Placed {
	// tr.out is the timeline's own buffer, which Flush reuses.
	out := append(slices.Clone(tr.out), tr.tl.Flush()...)
	tr.out = nil
	return out
}

// LastSeq returns the stream sequence of the last message read: after a
// Flush, a reader opened at the next one goes on where this one stopped.
func (tr *TimelineReader) LastSeq() uint64 { return tr.r.LastSeq() }

// Hosts returns what the timeline knows of each agent.
func (tr *TimelineReader) Hosts() []TimelineHost { return tr.tl.Hosts() }

// SetTracepoints changes the tracepoints of a reader opened with
// HitOptions.Filtered (see HitReader.SetTracepoints).
func (tr *TimelineReader) SetTracepoints(ctx context.Context, ids []string) error {
	return tr.r.SetTracepoints(ctx, ids)
}

// Close stops the reader.
func (tr *TimelineReader) Close() { tr.r.Close() }
