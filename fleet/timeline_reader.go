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

// quietAfter is how long a stream with no message at all is taken as
// quiet: the reader then moves the timeline's time on by what passed here,
// less quietMargin for the delivery of the message it may be about to
// read. Agents speak at least every WatermarkKeepalive, so a quiet stream
// means they are all gone or cut off, or a replay reached the end.
const (
	quietAfter  = 250 * time.Millisecond
	quietMargin = 50 * time.Millisecond
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
				quiet := time.Since(tr.lastMsg) - quietMargin
				tr.out = tr.tl.Advance(tr.lastTime.Add(quiet))
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
