package fleet

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of an Outbox: the hit buffer (ten seconds at 1k hits/s fit
// many times over), the window of hits awaiting their ack, and how long
// an ack may take before the hit is sent again.
//
// The ack timeout is long because a hit sent again costs the stream as
// much as the first copy: a thousand agents at their smallest window
// have a thousand hits in flight, which a cluster starved of CPU may take
// ten seconds to store, and sending them all again then doubles its work.
// It stays well within the stream's duplicate detection
// (HitDuplicateWindow): a hit not acknowledged within that window, less
// one ack timeout, of its first send is given up and counted lost rather
// than sent again, as a copy sent after the window could be stored twice.
// A link cut is found sooner, by silence (see silentFor), and a server
// gone fails every hit in flight at once.
const (
	DefaultBufferHits  = 100_000
	DefaultBufferBytes = 64 << 20
	DefaultAckWindow   = 512
	DefaultAckTimeout  = 30 * time.Second
)

// HitDuplicateWindow is how long the hit stream remembers a message id to
// refuse its copies.
const HitDuplicateWindow = 10 * time.Minute

// lateAck is when an ack is late: the stream has more queued than it
// stores in that time, and the window is cut. markEvery is how often a
// watermark is kept behind a backlog of hits (see OfferMarks). silentFor is how long hits
// may await their ack with nothing heard before the connection is
// probed, at least: three times the usual ack's time, if longer, as a
// starved server answers a probe late too, and a probe that times out
// reconnects. retryMin and retryMax bound the backoff of a hit sent
// again.
const (
	lateAck   = time.Second
	markEvery = time.Second
	silentFor = 5 * time.Second
	retryMin  = 100 * time.Millisecond
	retryMax  = 2 * time.Second
)

// A batch is at most batchHits hits and batchBytes bytes before it is
// packed, or half the server's largest message if that is less, so that
// it fits even if packing saves nothing; the hits it takes are found
// among the next batchScan kept. A lone hit is never held back to make
// one: only what waits for the window's room, or was offered together
// (OfferHit's more), is batched.
//
// Each message costs the cluster much for itself (its replication, its
// ack, its message id remembered, its delivery to each reader) besides
// its bytes, which packing cuts: at the earlier bound of 64 KiB, 60 hits
// of 1 KiB, an overloaded fleet's batches were full.
const (
	batchHits  = 512
	batchBytes = 512 << 10
	batchScan  = 2048
)

// packFrom is the size from which a batch is packed (PackHitBatch);
// a smaller one goes as its HitBatch. Packing was measured to pay for an
// overloaded fleet's batches of 55 to 90 hits of 1 KiB (the servers' CPU
// per hit fell by 40 %); with batches of 6 to 19 such hits, at 10k hits/s
// from 1000 agents, the readers that place hits in order finished 20 s
// later with them packed than not, for a cause not yet found.
const packFrom = 32 << 10

// JetStream's error codes that say the stream is overloaded: a message id
// still being stored (the hit was sent again while its first copy waits
// in the stream's queue), and a queue full.
const (
	jsErrCodeDuplicateInProcess jetstream.ErrorCode = 10158
	jsErrCodeTooManyRequests    jetstream.ErrorCode = 10167
)

// ErrOutboxStopped is why the hits still kept when an Outbox stops are
// lost.
var ErrOutboxStopped = errors.New("the publisher stopped before NATS took the hit")

// OutboxConfig says how an Outbox keeps and sends one host's hits. T is
// what its owner tags each hit with, given back when the hit is stored or
// lost.
type OutboxConfig[T any] struct {
	Host string
	// IDBase starts every message id: the ids are IDBase and a sequence.
	// It must differ from every earlier run's of the same host.
	IDBase string
	// MaxHits and MaxBytes bound the hits kept until acknowledged
	// (DefaultBufferHits and DefaultBufferBytes if 0).
	MaxHits, MaxBytes int
	// Window is the most hits awaiting their ack at once
	// (DefaultAckWindow if 0); fewer while the stream is congested.
	Window int
	// AckTimeout is how long an ack may take before the hit is sent
	// again (DefaultAckTimeout if 0). An ack later than a second cuts
	// the window.
	AckTimeout time.Duration
	// DuplicateWindow is how long the stream remembers message ids
	// (HitDuplicateWindow if 0): a hit not acknowledged within it, less
	// an ack timeout, of its first send is counted lost, not sent again.
	DuplicateWindow time.Duration
	Log             *slog.Logger

	// The calls below, all optional, come from the Outbox's goroutine
	// (Buffered under the Outbox's lock).

	// Stored is told of each hit the stream took.
	Stored func(tag T)
	// Lost is told of each hit that never reaches the stream: the stream
	// refused it for good (too big), or it was still kept when Run
	// returned (ErrOutboxStopped).
	Lost func(tag T, err error)
	// Failed is told of each failed send or ack; the hit is kept.
	Failed func(err error)
	// Buffered is told how many hits and bytes are kept: each time Run
	// wakes, and as hits leave.
	Buffered func(hits, bytes int)
}

// OutboxStats are what an Outbox counted since it started.
type OutboxStats struct {
	Offered  int64 // hits offered, taken or not
	Dropped  int64 // hits offered while the buffer was full: not taken
	Stored   int64 // hits the stream acknowledged, once each
	Lost     int64 // hits refused for good, or kept when Run returned
	Sent     int64 // publishes, hits and watermarks, first and again
	Resent   int64 // publishes of a hit sent before (a watermark never is)
	Repeated int64 // acks saying the stream had stored the hit already
	TimedOut int64 // acks that did not come within AckTimeout
	// InProcess counts hits sent again whose first copy was still being
	// stored; TooMany, hits the stream's full queue refused.
	InProcess, TooMany int64
	// Batches counts the publishes of several hits in one message (a
	// PackedHitBatch, or a HitBatch if packing did not pay), first sends
	// only, Batched the hits they carried, and BatchBytes their bytes.
	Batches, Batched, BatchBytes int64
	Window                       int           // hits that may await their ack now
	AckTime                      time.Duration // an ack's usual time now: a moving average
}

// Outbox delivers one host's hits and watermarks to the hit stream,
// each once, through outages and overload. It keeps every hit until the
// stream acknowledges it, up to a bound in hits and bytes; a hit offered
// while the buffer is full is refused and counted (Stats.Dropped), so
// that its owner counts it lost. Every hit carries a message id, so one
// that was stored but whose ack was lost is not stored twice (within the
// stream's duplicate window).
//
// Under overload it backs off rather than multiplying the load: at most an
// AckWindow of hits await their ack, halved when an ack comes late or
// not at all or when the stream says it is full; only the hit whose ack
// failed is sent again, after a backoff, while the others in flight keep
// waiting for theirs; and a hit the stream reports as still being stored
// from an earlier send is looked at again only after a while, by which
// time its first copy's fate may be known.
//
// Hits leave in the order offered: nothing new is sent while a hit waits
// to be sent again, so that neither a later hit nor a watermark passes
// it. A watermark goes once the hits before it are stored, and without
// asking for its own ack: lost, it is never sent again, as the next one
// says more. Only hits already in flight when an earlier one failed may be
// stored before it, as when every hit was sent again after a failure.
//
// Hits that wait for the window's room, or were offered together, leave
// several to a message: the next hit to send takes with it, in one
// HitBatch under one message id, the hits of its tracepoint offered after
// it and before the next watermark. Each message costs the stream far more than its bytes, so a
// backlog drains many times faster, and readers decode the batch into
// its hits (DecodeHits). A hit of another tracepoint may then be stored
// after a later hit of this one; a tracepoint's own hits, and every hit
// against the watermarks, keep the order offered. A batch is sent again
// whole under its id, so the stream stores it, and each of its hits,
// once; its hits are counted stored or lost each.
//
// Its goroutine, Run, is the only one that publishes; Offer and OfferMarks
// hand it hits and watermarks, and the nats.go goroutines that receive
// acks hand them over through events.
type Outbox[T any] struct {
	c    *Client
	js   jetstream.JetStream
	subj Subjects
	cfg  OutboxConfig[T]

	wake chan struct{} // something to do; cap 1
	done chan struct{} // closed when Run returns
	bufs bufPool       // the buffers of OfferHit's hits, used again

	// mu guards the fields below.
	mu     sync.Mutex
	fresh  []*outEntry[T] // never sent, oldest first
	kept   int            // hits and watermarks not yet acknowledged
	bytes  int
	seq    uint64
	empty  chan struct{} // closed and replaced when kept becomes 0; nil while 0
	marked []string      // the tracepoints of the last watermarks offered
	// subjects are the subjects of the tracepoints offered so far.
	subjects map[subjectKey]string
	// lastMarks are the last watermarks offered while none of them is
	// sent, and lastMarksOf their tracepoints; lastMarksBorn is when the
	// first of those they replaced was offered.
	lastMarks     []*outEntry[T]
	lastMarksOf   []string
	lastMarksBorn time.Time
	events        []outEvent // acks and failures not yet handled
	// spare are entries of hits done with, for the next offers: one
	// allocated per hit was a tenth of what an agent allocated per hit
	// on make bench's hot loop.
	spare   []*outEntry[T]
	stats   OutboxStats
	probing atomic.Bool // a probe of the connection runs
}

// outEntry is one hit or watermark on its way.
type outEntry[T any] struct {
	tag     T
	subject string
	data    []byte    // a batch's: made when it is first sent
	msg     *nats.Msg // made when first sent
	mark    bool
	// buf holds data if it is a buffer of the outbox's bufs (a hit of
	// OfferHit's, or a batch), given back once it is forgotten.
	buf *msgBuf
	// parts are the hits of a batch, which sends them in one message;
	// nil for a lone hit or a watermark.
	parts []*outEntry[T]
	// superseded says a later watermark replaced it before it was sent:
	// it is no longer kept, and is skipped.
	superseded bool
	seq        uint64    // order offered
	firstSent  time.Time // its first send
	sentAt     time.Time // its last send
	sendNo     uint64    // its last send's number in the window
	tries      int       // failed sends and acks so far
	due        time.Time // when to send it again
}

// outEvent is an ack or failure of one message, from nats.go.
type outEvent struct {
	msg *nats.Msg
	ack *jetstream.PubAck
	err error
	at  time.Time
}

// NewOutbox returns the outbox of cfg.Host's hits on c's hit stream; Run
// sends them.
func NewOutbox[T any](c *Client, cfg OutboxConfig[T]) (*Outbox[T], error) {
	cfg.MaxHits = cmpOr(cfg.MaxHits, DefaultBufferHits)
	cfg.MaxBytes = cmpOr(cfg.MaxBytes, DefaultBufferBytes)
	cfg.Window = cmpOr(cfg.Window, DefaultAckWindow)
	cfg.AckTimeout = cmpOr(cfg.AckTimeout, DefaultAckTimeout)
	cfg.DuplicateWindow = cmpOr(cfg.DuplicateWindow, HitDuplicateWindow)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	o := &Outbox[T]{c: c, subj: c.subj, cfg: cfg,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	opts := []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
		// nats.go's own bound is never reached: the window is smaller.
		jetstream.WithPublishAsyncMaxPending(2 * cfg.Window),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
			o.event(outEvent{msg: m, ack: ack, at: time.Now()})
		}),
		// Called with nats.go's publisher locked, at times: it must not
		// block nor publish.
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			o.event(outEvent{msg: m, err: err, at: time.Now()})
		}),
	}
	var err error
	if c.domain != "" {
		o.js, err = jetstream.NewWithDomain(c.nc, c.domain, opts...)
	} else {
		o.js, err = jetstream.New(c.nc, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("opening JetStream for publishing hits: %w", err)
	}
	return o, nil
}

func cmpOr[N int | time.Duration](v, def N) N {
	if v <= 0 {
		return def
	}
	return v
}

// Offer keeps one encoded hit of tracepoint, tagged tag, to be sent. It
// returns false, keeping nothing, if the buffer is full: the caller
// counts the hit as lost.
func (o *Outbox[T]) Offer(tracepoint string, data []byte, tag T) bool {
	return o.offer(tracepoint, data, tag, nil, false)
}

// OfferHit is Offer of h encoded (EncodeHit): in a buffer of the outbox's
// own, used again once the stream has the hit or it is lost.
//
// more says the caller offers another hit, or calls Wake, at once: the
// sender is not woken for this one, and they leave together (it is woken
// anyway once batchHits wait). An agent's reader decodes hits a few at a
// time (see package ebpf); offered one by one, each woke the sender, which
// sent what was there, often that hit alone, and each message woke
// nats.go's flusher and, for its ack, the sender again. Offered together,
// 60,000 hits of make bench's hot loop left in 343 messages instead of
// 1,109.
func (o *Outbox[T]) OfferHit(h *Hit, tag T, more bool) bool {
	sc := encodeHitScratch(h)
	m := o.bufs.get(len(sc.b))
	m.b = append(m.b, sc.b...)
	putEncodeBuf(sc)
	if o.offer(h.Tracepoint, m.b, tag, m, more) {
		return true
	}
	o.bufs.put(m)
	return false
}

// Wake has the sender send what is offered: the hits offered with more.
func (o *Outbox[T]) Wake() { o.poke() }

func (o *Outbox[T]) offer(tracepoint string, data []byte, tag T, buf *msgBuf, more bool) bool {
	o.mu.Lock()
	o.stats.Offered++
	if o.kept > 0 && (o.kept >= o.cfg.MaxHits || o.bytes+len(data) > o.cfg.MaxBytes) {
		o.stats.Dropped++
		o.mu.Unlock()
		return false
	}
	var e *outEntry[T]
	if n := len(o.spare); n > 0 {
		e, o.spare = o.spare[n-1], o.spare[:n-1]
	} else {
		e = new(outEntry[T])
	}
	e.tag, e.buf = tag, buf
	o.keepLocked(e, o.subject(tracepoint, false), data)
	wake := !more || len(o.fresh) >= batchHits
	o.mu.Unlock()
	if wake {
		o.poke()
	}
	return true
}

// OfferMarks keeps an encoded watermark for each of tracepoints, on each
// one's subject (a reader of a tracepoint reads only its watermarks),
// behind the hits offered before them, unless the last thing kept and not
// yet sent is a watermark: during an outage, watermarks do not pile up,
// and those that leave with the hits say everything the others would
// have.
//
// Behind a backlog of hits, too, one watermark a second is kept: a new
// one replaces the last still unsent if that one is younger than a
// second (markEvery) and marks the same tracepoints, as it promises
// more. An agent offers one every 50 ms while it has hits; kept all,
// they took the overloaded stream's time from the hits.
func (o *Outbox[T]) OfferMarks(tracepoints []string, data []byte) {
	o.mu.Lock()
	o.marked = tracepoints
	if n := len(o.fresh); len(tracepoints) == 0 || n > 0 && o.fresh[n-1].mark {
		o.mu.Unlock()
		return
	}
	now := time.Now()
	prev, born := o.lastMarks, now
	if len(prev) > 0 && now.Sub(o.lastMarksBorn) < markEvery && slices.Equal(o.lastMarksOf, tracepoints) {
		born = o.lastMarksBorn
	} else {
		prev = nil
	}
	o.lastMarks = nil
	for _, id := range tracepoints {
		e := &outEntry[T]{mark: true}
		o.keepLocked(e, o.subject(id, true), data)
		o.lastMarks = append(o.lastMarks, e)
	}
	o.lastMarksOf, o.lastMarksBorn = tracepoints, born
	for _, e := range prev {
		e.superseded = true
		o.kept--
		o.bytes -= len(e.data)
	}
	o.mu.Unlock()
	o.poke()
}

// MarkedTracepoints returns the tracepoints of the last watermarks offered.
func (o *Outbox[T]) MarkedTracepoints() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.marked
}

// subject returns the subject of tracepoint's hits, or of its
// watermarks. Lock should be held.
func (o *Outbox[T]) subject(tracepoint string, mark bool) string {
	k := subjectKey{tracepoint, mark}
	subj, ok := o.subjects[k]
	if !ok {
		if o.subjects == nil {
			o.subjects = map[subjectKey]string{}
		}
		subj = o.subj.Trace(o.cfg.Host, tracepoint)
		if mark {
			subj = o.subj.Watermark(o.cfg.Host, tracepoint)
		}
		o.subjects[k] = subj
	}
	return subj
}

type subjectKey struct {
	tracepoint string
	mark       bool
}

// keepLocked appends e. Its message is made when it is first sent: an
// overloaded stream leaves many hits waiting, and some are never sent.
// Lock should be held.
func (o *Outbox[T]) keepLocked(e *outEntry[T], subject string, data []byte) {
	o.seq++
	e.seq = o.seq
	e.subject, e.data = subject, data
	o.fresh = append(o.fresh, e)
	o.kept++
	o.bytes += len(data)
	if o.empty == nil {
		o.empty = make(chan struct{})
	}
}

// gauge tells the owner what is kept. Lock should be held.
func (o *Outbox[T]) gauge() {
	if o.cfg.Buffered != nil {
		o.cfg.Buffered(o.kept, o.bytes)
	}
}

// each is what e carries: a batch's hits, else e itself.
func (e *outEntry[T]) each() []*outEntry[T] {
	if e.parts != nil {
		return e.parts
	}
	return []*outEntry[T]{e}
}

// forget drops e, acknowledged or lost, from what is kept, and gives its
// buffers back.
func (o *Outbox[T]) forget(e *outEntry[T]) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.parts != nil && e.buf != nil {
		// Nothing reads the batch's message any more either.
		o.bufs.put(e.buf)
		e.data, e.buf = nil, nil
	}
	for _, p := range e.each() {
		o.kept--
		o.bytes -= len(p.data)
		// Nothing reads its buffer any more: nats.go copied it as it
		// sent it.
		if p.buf != nil {
			o.bufs.put(p.buf)
			p.data, p.buf = nil, nil
		}
	}
	if o.kept == 0 && o.empty != nil {
		close(o.empty)
		o.empty = nil
	}
	o.gauge()
}

// event hands an ack or failure over to Run. It does not block: nats.go
// may call it with its publisher locked.
func (o *Outbox[T]) event(ev outEvent) {
	o.mu.Lock()
	o.events = append(o.events, ev)
	o.mu.Unlock()
	o.poke()
}

func (o *Outbox[T]) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Len is how many hits and watermarks are kept, not yet acknowledged.
func (o *Outbox[T]) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.kept
}

// Stats returns what o counted so far.
func (o *Outbox[T]) Stats() OutboxStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stats
}

// Done is closed when Run has returned.
func (o *Outbox[T]) Done() <-chan struct{} { return o.done }

// Flush waits until every hit offered so far is acknowledged, or ctx ends,
// or Run returns; it returns how many hits and watermarks were left.
func (o *Outbox[T]) Flush(ctx context.Context) int {
	o.mu.Lock()
	empty := o.empty
	o.mu.Unlock()
	if empty != nil {
		select {
		case <-empty:
		case <-ctx.Done():
		case <-o.done:
		}
	}
	return o.Len()
}

// sender is Run's own state.
type sender[T any] struct {
	window  *AckWindow
	flying  map[*nats.Msg]*outEntry[T] // awaiting their ack
	waiting retryHeap[T]               // to send again, by when
	ready   []*outEntry[T]             // to send again now, in order offered
	sorted  bool                       // ready is in order
	pause   time.Time                  // no send before: a send failed
	heard   time.Time                  // the last ack or failure, or the first send after none in flight
	probed  time.Time                  // the last probe for silence
	ackTime time.Duration              // an ack's usual time: a moving average
	down    time.Time                  // when the current streak of failures began
	resent  int                        // sent again since
	data    [][]byte                   // a batch's hits, while its message is made
}

func bySeq[T any](a, b *outEntry[T]) int { return cmp.Compare(a.seq, b.seq) }

// Run sends what is offered until ctx ends. What is still kept then is
// lost, and told to Lost; Flush first to deliver it.
func (o *Outbox[T]) Run(ctx context.Context) {
	defer close(o.done)
	// Once everything kept is counted: nats.go's reply subscription
	// goes, as the owner may make another Outbox on the same connection.
	defer o.js.CleanupPublisher()
	s := &sender[T]{window: NewAckWindow(o.cfg.Window), flying: map[*nats.Msg]*outEntry[T]{}}
	defer o.abandon(s)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		now := time.Now()
		// What is kept is told here, once a wake-up, and as hits are
		// forgotten: told for each hit offered, it was 0.7 % of an
		// agent's CPU per hit, the offering goroutine and this one
		// taking the gauges' memory from each other.
		o.mu.Lock()
		o.gauge()
		o.mu.Unlock()
		o.handle(s)
		for len(s.waiting) > 0 && !s.waiting[0].due.After(now) {
			s.ready = append(s.ready, heap.Pop(&s.waiting).(*outEntry[T]))
			s.sorted = false
		}
		if !s.sorted {
			// Sent again in the order offered: those failed together (a
			// disconnection fails every hit in flight) come back in any.
			slices.SortFunc(s.ready, bySeq)
			s.sorted = true
		}
		if !now.Before(s.pause) {
			o.send(s)
		}
		silent := max(silentFor, 3*s.ackTime)
		if len(s.flying) > 0 && now.Sub(s.heard) >= silent && now.Sub(s.probed) >= silent {
			// Hits in flight and nothing heard: the link may be cut
			// while the connection looks up.
			s.probed = now
			o.probe()
		}

		var tick <-chan time.Time
		next := time.Duration(-1)
		if len(s.waiting) > 0 {
			next = max(time.Until(s.waiting[0].due), time.Millisecond)
		}
		if (!o.c.Connected() || now.Before(s.pause)) && (len(s.ready) > 0 || o.Len() > len(s.flying)+len(s.waiting)) {
			// Poll for the connection: a reconnect raises no event here.
			next = retryMin
		}
		if len(s.flying) > 0 {
			silence := max(time.Until(s.heard.Add(silent)), time.Until(s.probed.Add(silent)), time.Millisecond)
			if next < 0 || silence < next {
				next = silence
			}
		}
		if next >= 0 {
			timer.Reset(next)
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-tick:
		}
		if tick != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// waitingBefore reports whether a hit offered before seq waits to be sent
// again.
func (s *sender[T]) waitingBefore(seq uint64) bool {
	for _, w := range s.waiting {
		if w.seq < seq {
			return true
		}
	}
	return false
}

// send publishes, while the window has room, the hits to send again, then
// those never sent.
func (o *Outbox[T]) send(s *sender[T]) {
	for o.c.Connected() && len(s.flying) < s.window.Size() {
		var e *outEntry[T]
		again := len(s.ready) > 0
		if again {
			e = s.ready[0]
			// One that failed earlier in the order still waits out its
			// backoff: it goes first, or a watermark sent again could
			// land before a hit it covers.
			if s.waitingBefore(e.seq) {
				return
			}
		} else {
			o.mu.Lock()
			for len(o.fresh) > 0 && o.fresh[0].superseded {
				o.fresh[0] = nil
				o.fresh = o.fresh[1:]
			}
			// A new hit or watermark waits for the hits before it that
			// wait to be sent again: they would have come first.
			if len(o.fresh) > 0 && len(s.waiting) == 0 && (!o.fresh[0].mark || len(s.flying) == 0) {
				// A watermark goes once every hit before it is stored:
				// one of them failing and sent again after it would
				// make it false.
				e = o.fresh[0]
				if e.mark {
					// On its way: no longer to be replaced.
					o.lastMarks = nil
				} else if e.parts == nil && len(o.fresh) > 1 {
					e = o.batchLocked()
				}
			}
			o.mu.Unlock()
		}
		if e == nil {
			return
		}
		// Its ack or failure comes as an event, not through the future.
		if e.msg == nil {
			id := o.cfg.IDBase + strconv.FormatUint(e.seq, 10)
			if e.parts != nil {
				data := s.data[:0]
				size := 0
				for _, p := range e.parts {
					data = append(data, p.data)
					size += len(p.data)
				}
				// In a buffer of bufs, as a hit's: given back once the
				// batch is forgotten. Made fresh, the batches were a
				// fifth of what an agent allocated per hit.
				if size >= packFrom {
					e.data = packHitBatch(data, func(n int) []byte {
						e.buf = o.bufs.get(n)
						return e.buf.b
					})
				} else {
					e.buf = o.bufs.get(hitBatchSize(data))
					e.data = appendHitBatch(e.buf.b, data)
				}
				clear(data)
				s.data = data[:0]
				// Not the id its first hit would have alone: a batch
				// too big for the stream is split and its hits sent
				// alone.
				id += "+" + strconv.Itoa(len(e.parts))
			}
			e.msg = streamMsg(e.subject, e.data, id)
			if e.parts != nil {
				e.msg.Header.Set(HitsHeader, strconv.Itoa(len(e.parts)))
			}
			e.firstSent = time.Now()
		}
		var err error
		if e.mark {
			// A watermark goes without asking for the stream's ack:
			// the hits it covers are stored already, and one lost
			// says less than the next, never something false. Its
			// ack woke the agent's goroutines again: with a hit
			// every 500 ms (a watermark every 50 ms), 36 ms of CPU a
			// second with acks, 29 without.
			err = o.c.nc.PublishMsg(e.msg)
		} else {
			_, err = o.js.PublishMsgAsync(e.msg, jetstream.WithRetryAttempts(0))
		}
		if err != nil && !tooBig(err) {
			// Not sent: the connection is going, or nats.go is full. It
			// stays where it is, to go first after a pause.
			o.failed(s, err)
			s.pause = time.Now().Add(retryMin)
			return
		}
		if again {
			s.ready[0] = nil
			s.ready = s.ready[1:]
		} else {
			o.mu.Lock()
			o.fresh[0] = nil
			o.fresh = o.fresh[1:]
			o.mu.Unlock()
		}
		if err != nil {
			o.refusedTooBig(s, e, err)
			continue
		}
		if e.mark {
			o.count(func(st *OutboxStats) { st.Sent++ })
			o.forget(e)
			continue
		}
		e.sentAt, e.sendNo = time.Now(), s.window.Sent()
		if len(s.flying) == 0 {
			s.heard = e.sentAt
		}
		s.flying[e.msg] = e
		o.mu.Lock()
		o.stats.Sent++
		if again {
			o.stats.Resent++
			s.resent++
		} else if e.parts != nil {
			o.stats.Batches++
			o.stats.Batched += int64(len(e.parts))
			o.stats.BatchBytes += int64(len(e.data))
		}
		o.mu.Unlock()
	}
}

// batchLocked puts in the place of fresh[0], a hit, one batch of it and
// the hits after it on its subject, up to the next watermark, if there
// are any, and returns what is then fresh[0]. The hits it does not take
// keep their order. Lock should be held.
func (o *Outbox[T]) batchLocked() *outEntry[T] {
	first := o.fresh[0]
	limit := min(batchBytes, int(o.c.nc.MaxPayload()/2))
	parts := []*outEntry[T]{first}
	size := len(batchHead) + len(first.data)
	left := o.fresh[:1] // what is not taken, written over what was read
	i := 1
	for ; i < len(o.fresh) && i < batchScan && len(parts) < batchHits; i++ {
		e := o.fresh[i]
		if e.mark && !e.superseded {
			// A watermark says that the hits before it are stored:
			// none after it may pass it.
			break
		}
		if e.mark || e.subject != first.subject {
			left = append(left, e)
			continue
		}
		if size+len(e.data)+1 > limit {
			// The batch is full: a smaller hit after this one must not
			// pass it.
			break
		}
		parts = append(parts, e)
		size += len(e.data) + 1
	}
	if len(parts) == 1 {
		return first
	}
	n := copy(o.fresh[len(left):], o.fresh[i:])
	clear(o.fresh[len(left)+n:])
	o.fresh = o.fresh[:len(left)+n]
	// Its data is made when it is first sent, outside the lock.
	b := &outEntry[T]{subject: first.subject, seq: first.seq, parts: parts}
	o.fresh[0] = b
	return b
}

// refusedTooBig settles e, which the server or the stream refused as too big: a
// hit is lost, as sending it again cannot help; a batch's hits are sent
// again alone, in order, each under its own id.
func (o *Outbox[T]) refusedTooBig(s *sender[T], e *outEntry[T], err error) {
	if e.parts == nil {
		o.lose(e, err)
		return
	}
	o.cfg.Log.Warn("NATS refused a batch of hits as too big; sending them one by one", "hits", len(e.parts), "bytes", len(e.data), "err", err)
	s.ready = append(s.ready, e.parts...)
	s.sorted = false
}

// handle takes the acks and failures that came.
func (o *Outbox[T]) handle(s *sender[T]) {
	o.mu.Lock()
	evs := o.events
	o.events = nil
	o.mu.Unlock()
	for _, ev := range evs {
		s.heard = ev.at
		e := s.flying[ev.msg]
		if e == nil {
			continue
		}
		delete(s.flying, ev.msg)
		if ev.err == nil {
			o.stored(s, e, ev)
		} else {
			o.failedAck(s, e, ev)
		}
	}
}

// stored settles e, a hit or a batch (watermarks go unacknowledged),
// acknowledged by ev.
func (o *Outbox[T]) stored(s *sender[T], e *outEntry[T], ev outEvent) {
	took := ev.at.Sub(e.sentAt)
	s.window.Acked(e.sendNo, took > lateAck)
	s.ackTime += (took - s.ackTime) / 8
	o.mu.Lock()
	o.stats.Stored += int64(len(e.each()))
	if ev.ack.Duplicate {
		o.stats.Repeated++
	}
	o.stats.Window, o.stats.AckTime = s.window.Size(), s.ackTime
	o.mu.Unlock()
	o.forget(e)
	if o.cfg.Stored != nil {
		for _, p := range e.each() {
			o.cfg.Stored(p.tag)
		}
	}
	o.recycle(e)
	if !s.down.IsZero() {
		o.cfg.Log.Info("NATS takes hits again", "down", time.Since(s.down).Round(time.Millisecond), "resent", s.resent, "buffered", o.Len())
		s.down, s.resent = time.Time{}, 0
	}
}

// failedAck decides what to do with e, whose send failed as ev says.
func (o *Outbox[T]) failedAck(s *sender[T], e *outEntry[T], ev outEvent) {
	if tooBig(ev.err) {
		o.refusedTooBig(s, e, ev.err)
		return
	}
	o.failed(s, ev.err)
	if giveUp := o.cfg.DuplicateWindow - o.cfg.AckTimeout; ev.at.Sub(e.firstSent) > giveUp {
		// A copy now might come after the stream forgot the first: it
		// could be stored twice. Lost is counted, never a duplicate.
		o.lose(e, fmt.Errorf("not acknowledged within %v of its first send (%w); sending it again could store it twice", giveUp, ev.err))
		return
	}
	wait := backoff(e.tries)
	var api *jetstream.APIError
	switch {
	case errors.Is(ev.err, jetstream.ErrAsyncPublishTimeout):
		// The stream is behind, or the hit was lost on its way (a
		// server died). Only a send again tells which.
		s.window.Congested(e.sendNo)
		o.count(func(st *OutboxStats) { st.TimedOut++ })
	case errors.As(ev.err, &api) && api.ErrorCode == jsErrCodeDuplicateInProcess:
		// The first copy waits in the stream's queue: it will be stored
		// or lost. Sending again soon would only queue another copy.
		s.window.Congested(e.sendNo)
		o.count(func(st *OutboxStats) { st.InProcess++ })
		wait = max(wait, silentFor)
	case errors.As(ev.err, &api) && api.ErrorCode == jsErrCodeTooManyRequests:
		s.window.Congested(e.sendNo)
		o.count(func(st *OutboxStats) { st.TooMany++ })
	}
	e.tries++
	e.due = ev.at.Add(wait)
	heap.Push(&s.waiting, e)
	o.count(func(st *OutboxStats) { st.Window = s.window.Size() })
}

// failed reports a failed send or ack.
func (o *Outbox[T]) failed(s *sender[T], err error) {
	if o.cfg.Failed != nil {
		o.cfg.Failed(err)
	}
	if s.down.IsZero() {
		s.down = time.Now()
		o.cfg.Log.Warn("NATS does not take hits; keeping them until it does", "err", err, "buffered", o.Len())
	}
}

// backoff is how long a hit that failed tries times waits to be sent
// again: doubling from retryMin to retryMax, with a quarter of jitter so
// that a fleet's agents do not come back in step.
func backoff(tries int) time.Duration {
	d := min(retryMin<<min(tries, 10), retryMax)
	return d - time.Duration(rand.Int64N(int64(d/4)+1))
}

// probe makes sure, in the background and one at a time, that the
// connection still reaches the server: silence while hits await their
// ack may be the first sign of a cut link.
func (o *Outbox[T]) probe() {
	if !o.probing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer o.probing.Store(false)
		if err := o.c.Probe(); err != nil {
			o.cfg.Log.Warn("checking the connection to NATS", "err", err)
		}
	}()
}

func (o *Outbox[T]) count(f func(*OutboxStats)) {
	o.mu.Lock()
	f(&o.stats)
	o.mu.Unlock()
}

// lose drops e, which never reaches the stream, and tells its owner.
func (o *Outbox[T]) lose(e *outEntry[T], err error) {
	o.forget(e)
	if e.mark {
		return
	}
	parts := e.each()
	o.count(func(st *OutboxStats) { st.Lost += int64(len(parts)) })
	if o.cfg.Lost != nil {
		for _, p := range parts {
			o.cfg.Lost(p.tag, err)
		}
	}
	o.recycle(e)
}

// maxSpare bounds the entries kept for the next offers: those of a
// drained backlog beyond it go to the collector.
const maxSpare = 4096

// recycle keeps the entries of e's hits, forgotten and told to the owner,
// for the next offers. Nothing else holds them: a hit's entry is in one
// place at a time (fresh, a batch, flying, waiting or ready) until then.
func (o *Outbox[T]) recycle(e *outEntry[T]) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range e.each() {
		if len(o.spare) == maxSpare {
			return
		}
		*p = outEntry[T]{}
		o.spare = append(o.spare, p)
	}
}

// abandon loses everything still kept once Run stops.
func (o *Outbox[T]) abandon(s *sender[T]) {
	o.mu.Lock()
	left := slices.DeleteFunc(o.fresh, func(e *outEntry[T]) bool { return e.superseded })
	o.fresh = nil
	o.mu.Unlock()
	left = append(left, s.ready...)
	left = append(left, s.waiting...)
	for _, e := range s.flying {
		left = append(left, e)
	}
	slices.SortFunc(left, bySeq)
	for _, e := range left {
		o.lose(e, ErrOutboxStopped)
	}
}

// tooBig tells a hit over the server's or the stream's size limit.
func tooBig(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// retryHeap is the hits to send again, soonest first.
type retryHeap[T any] []*outEntry[T]

func (h retryHeap[T]) Len() int { return len(h) }
func (h retryHeap[T]) Less(i, j int) bool {
	return h[i].due.Before(h[j].due) || h[i].due.Equal(h[j].due) && h[i].seq < h[j].seq
}
func (h retryHeap[T]) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *retryHeap[T]) Push(x any)   { *h = append(*h, x.(*outEntry[T])) }
func (h *retryHeap[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
