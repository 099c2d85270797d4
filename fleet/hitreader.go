package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// HitOptions choose which hits a HitReader returns.
type HitOptions struct {
	// Tracepoints reads only the hits of these ids, and the watermarks
	// for them (Subjects.Watermark): the server filters, so the reader
	// receives nothing of another tracepoint. Empty reads every hit,
	// unless Filtered.
	Tracepoints []string
	// Filtered reads only the hits of Tracepoints even while it is empty,
	// that is nothing; HitReader.SetTracepoints changes them. For a
	// reader whose tracepoints come and go, like a debug session.
	Filtered bool
	// Replay starts at the beginning of the retained history; otherwise
	// reading starts with hits published after the reader opens.
	Replay bool
	// Since starts at the first hit stored at or after this time.
	Since time.Time
	// StartSeq starts at this stream sequence.
	StartSeq uint64
	// Until ends the reading after this stream sequence: Next then
	// returns io.EOF. 0 reads on.
	Until uint64
}

// HitReader reads hits in stream order. A filtered reader's tracepoints
// can change while it reads (SetTracepoints): it goes on from the message
// after the last it returned, so no hit of a tracepoint it keeps is lost
// or read twice.
type HitReader struct {
	c        *Client
	subj     Subjects
	until    uint64
	filtered bool
	base     jetstream.OrderedConsumerConfig // where reading starts, before any message
	wake     chan struct{}                   // cap 1: a consumer came while Next had none
	// batch holds the hits of the last message read not yet returned:
	// the rest of a HitBatch. Only NextMessage uses it.
	batch []Hit

	// mu guards the fields below. Next does not hold it while it waits
	// for a message.
	mu     sync.Mutex
	iter   jetstream.MessagesContext // nil while filtered on no tracepoint
	cons   jetstream.Consumer        // what iter reads
	gen    uint64                    // counts the consumers opened
	want   map[string]bool           // nil: every tracepoint
	next   uint64                    // the stream sequence after the last message returned; 0 before any
	done   bool                      // read up to until
	closed bool
}

// Hits opens a reader on the hit stream. Every reader sees hits in the same
// order: the stream's.
func (c *Client) Hits(ctx context.Context, opts HitOptions) (*HitReader, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	switch {
	case opts.StartSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.StartSeq
	case !opts.Since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &opts.Since
	case opts.Replay:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	r := &HitReader{c: c, subj: c.subj, until: opts.Until, filtered: opts.Filtered || len(opts.Tracepoints) > 0, wake: make(chan struct{}, 1)}
	if r.filtered && cfg.DeliverPolicy == jetstream.DeliverNewPolicy {
		// "From now" is pinned to a sequence, so that a consumer opened
		// later for other tracepoints starts here too, not later.
		last, err := c.HitStreamEnd(ctx)
		if err != nil {
			return nil, err
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	}
	r.base = cfg
	if !r.filtered {
		cons, it, err := r.open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		r.cons, r.iter = cons, it
		return r, nil
	}
	if err := r.SetTracepoints(ctx, opts.Tracepoints); err != nil {
		return nil, err
	}
	return r, nil
}

// open opens an ordered consumer with cfg and starts reading it.
func (r *HitReader) open(ctx context.Context, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, jetstream.MessagesContext, error) {
	gctx, release := r.c.perms.guard(ctx, r.c.perms.jsPatterns()...)
	defer release()
	cons, err := r.c.js.OrderedConsumer(gctx, r.subj.HitStream(), cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the hit stream: %w", denied(gctx, err))
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the hit stream: %w", denied(gctx, err))
	}
	return cons, it, nil
}

// CaughtUp asks the server whether the reader has read every message it
// is to read that the stream held when the server answered, at time at
// on the server's clock. A reader that has knows that no message of the
// stream it has not read is older than at, give or take the server's
// locks; one that has not has messages on their way to it.
func (r *HitReader) CaughtUp(ctx context.Context) (ok bool, at time.Time, err error) {
	r.mu.Lock()
	cons, next := r.cons, r.next
	r.mu.Unlock()
	if cons == nil {
		return false, time.Time{}, errors.New("asking whether the reader caught up: it reads no tracepoint")
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, time.Time{}, fmt.Errorf("asking whether the reader caught up: %w", err)
	}
	return info.NumPending == 0 && info.Delivered.Stream < max(next, 1), info.TimeStamp, nil
}

// SetTracepoints makes a filtered reader read the hits of ids from the
// message after the last it returned. Open the reader's tracepoints before
// declaring them: a hit published in between is then read.
func (r *HitReader) SetTracepoints(ctx context.Context, ids []string) error {
	if !r.filtered {
		return errors.New("setting the tracepoints of a reader of every hit: open it with HitOptions.Filtered")
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return jetstream.ErrMsgIteratorClosed
	}
	if r.want != nil && maps.Equal(want, r.want) {
		return nil
	}
	var it jetstream.MessagesContext
	var cons jetstream.Consumer
	if len(want) > 0 {
		cfg := r.base
		if r.next > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, r.next, nil
		}
		for id := range want {
			cfg.FilterSubjects = append(cfg.FilterSubjects, r.subj.TraceOf(id), r.subj.WatermarkOf(id))
		}
		var err error
		if cons, it, err = r.open(ctx, cfg); err != nil {
			return err
		}
	}
	if r.iter != nil {
		r.iter.Stop()
	}
	r.iter, r.cons, r.want = it, cons, want
	r.gen++
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// Next returns the next hit, skipping the agents' watermarks. A malformed
// message in the stream comes back as an *Error naming its sequence; the
// reader stays usable. After Close, Next returns
// jetstream.ErrMsgIteratorClosed.
func (r *HitReader) Next(ctx context.Context) (Hit, error) {
	for {
		h, w, err := r.NextMessage(ctx)
		if err != nil || w == nil {
			return h, err
		}
	}
}

// NextMessage returns the next hit, or the next watermark (w not nil), in
// stream order. A reader of every hit gets every agent's watermarks; a
// filtered one those for its tracepoints.
//
// The hits of a HitBatch come one by one, with the batch's Seq and their
// Part, as if each had come alone.
func (r *HitReader) NextMessage(ctx context.Context) (h Hit, w *Watermark, err error) {
	for {
		r.mu.Lock()
		it, gen, done, closed, want := r.iter, r.gen, r.done, r.closed, r.want
		r.mu.Unlock()
		if len(r.batch) > 0 && !closed {
			h := r.batch[0]
			r.batch = r.batch[1:]
			if len(want) > 0 && !want[h.Tracepoint] {
				continue
			}
			return h, nil, nil
		}
		switch {
		case done:
			return Hit{}, nil, io.EOF
		case closed:
			return Hit{}, nil, jetstream.ErrMsgIteratorClosed
		case it == nil:
			// Filtered on no tracepoint: nothing to read until some come.
			select {
			case <-r.wake:
				continue
			case <-ctx.Done():
				return Hit{}, nil, ctx.Err()
			}
		}
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && r.replaced(gen) {
				continue
			}
			return Hit{}, nil, err
		}
		md, err := msg.Metadata()
		if err != nil {
			return Hit{}, nil, fmt.Errorf("reading hit metadata: %w", err)
		}
		r.mu.Lock()
		if r.gen != gen {
			// Read from a consumer SetTracepoints replaced: its successor
			// delivers this message again if it still matches.
			r.mu.Unlock()
			continue
		}
		r.next = md.Sequence.Stream + 1
		r.done = r.until > 0 && md.Sequence.Stream >= r.until
		r.mu.Unlock()
		subject := msg.Subject()
		if host, ok := r.subj.WatermarkHost(subject); ok {
			var w Watermark
			if err := Decode(msg.Data(), "watermark", &w); err != nil {
				return Hit{}, nil, Errorf(AsError(err).Code, "watermark #%d on %s: %v", md.Sequence.Stream, subject, err)
			}
			w.Seq, w.ServerTime = md.Sequence.Stream, md.Timestamp
			// As for hits: only the host's agent may publish on its
			// subject, whatever the body says.
			w.Host = host
			return Hit{}, &w, nil
		}
		if r.legacy(subject) {
			return Hit{}, nil, Errorf(CodeBadVersion, "message #%d on %s comes from an agent of wire version 1, which publishes on one subject per host; this client speaks version %d: upgrade that agent", md.Sequence.Stream, subject, HitVersion)
		}
		hits, err := DecodeHits(msg.Data(), r.batch[:0])
		if err != nil {
			return Hit{}, nil, Errorf(AsError(err).Code, "hit #%d on %s: %v", md.Sequence.Stream, subject, err)
		}
		for i := range hits {
			hits[i].Seq, hits[i].ServerTime = md.Sequence.Stream, md.Timestamp
			markHost(&hits[i], r.subj, subject)
		}
		// The loop's top returns them, each filtered as a lone hit is.
		r.batch = hits
	}
}

// replaced tells whether the consumer of generation gen was replaced by
// SetTracepoints (not closed by Close).
func (r *HitReader) replaced(gen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen != gen && !r.closed
}

// legacy tells a subject of wire version 1.
func (r *HitReader) legacy(subject string) bool {
	rest, ok := strings.CutPrefix(subject, r.subj.Prefix+".")
	return ok && (strings.HasSuffix(rest, ".debugger.trace") || strings.HasSuffix(rest, ".debugger.watermark"))
}

// LastSeq returns the stream sequence of the last message read, 0 before
// the first: a reader reopened after it misses nothing and reads nothing
// twice.
func (r *HitReader) LastSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == 0 {
		return 0
	}
	return r.next - 1
}

// Close stops the reader.
func (r *HitReader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.iter != nil {
		r.iter.Stop()
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
