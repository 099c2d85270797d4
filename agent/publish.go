package agent

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/fleet"
)

// Defaults of the hit buffer: ten seconds at 1k hits/s fit many times over.
const (
	DefaultBufferHits  = 100_000
	DefaultBufferBytes = 64 << 20
)

// Publishing: how many hits may await their ack at once at most (fewer
// while acks time out: fleet.AckWindow), how long an ack may take, and how
// long to wait before sending again after a failure.
const (
	publishWindow     = 512
	publishAckTimeout = 5 * time.Second
	retryMin          = 100 * time.Millisecond
	retryMax          = 2 * time.Second
)

// publisher delivers hits to the hit stream in the order the agent took them,
// through NATS outages. It keeps every hit until JetStream acknowledges it,
// up to a bound in hits and bytes; after a failure (server restart, network
// cut) it waits for the connection and sends again from the first hit not
// acknowledged. Every hit carries a message id, so one that was stored but
// whose ack was lost is not stored twice (within the stream's duplicate
// window).
//
// Its one goroutine, run, is the only writer of hits on the connection; the
// pumps hand hits to it through offer.
type publisher struct {
	c        *fleet.Client
	hits     *fleet.HitPublisher
	idBase   string // message ids are idBase + a sequence
	maxHits  int
	maxBytes int
	log      *slog.Logger
	metrics  *metrics
	// refused is told of a hit the stream refused for good (too big, say):
	// it is lost, like one that did not fit in the buffer.
	refused func(k placeKey, dropped uint64)

	wake chan struct{} // a hit was offered; cap 1
	done chan struct{} // closed when run returns

	// mu guards the fields below.
	mu    sync.Mutex
	queue []*outgoing // not yet acknowledged, oldest first; the first ones are in flight
	bytes int
	seq   uint64
	empty chan struct{} // closed and replaced when queue becomes empty; nil while empty
	// marked are the tracepoints of the last watermarks offered.
	marked []string
}

// outgoing is one hit on its way.
type outgoing struct {
	key     placeKey
	dropped uint64 // the hit's own dropped count, passed on if it is lost
	msg     *nats.Msg
	acked   bool // stored, found while settling after a failure
	mark    bool // a watermark (for key.id), not a hit
}

func newPublisher(c *fleet.Client, host, idBase string, maxHits, maxBytes int, log *slog.Logger, m *metrics) (*publisher, error) {
	hits, err := c.NewHitPublisher(host, publishAckTimeout, 2*publishWindow)
	if err != nil {
		return nil, err
	}
	return &publisher{
		c: c, hits: hits, idBase: idBase,
		maxHits: maxHits, maxBytes: maxBytes, log: log, metrics: m,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}, nil
}

// offer queues one encoded hit of tracepoint k.id in process k.pid, whose
// Dropped field is dropped. It returns false, keeping nothing, if the buffer
// is full: the caller counts the hit as lost.
func (p *publisher) offer(k placeKey, dropped uint64, data []byte) bool {
	p.mu.Lock()
	if len(p.queue) > 0 && (len(p.queue) >= p.maxHits || p.bytes+len(data) > p.maxBytes) {
		p.mu.Unlock()
		return false
	}
	p.enqueue(&outgoing{key: k, dropped: dropped}, data)
	return true
}

// offerMarks queues an encoded watermark for each of tracepoints, on each
// one's subject (a reader of a tracepoint reads only its watermarks),
// behind the hits offered before them, unless the last thing queued is a
// watermark still waiting: during an outage, watermarks do not pile up,
// and those that leave with the hits say everything the others would
// have.
func (p *publisher) offerMarks(tracepoints []string, data []byte) {
	p.mu.Lock()
	p.marked = tracepoints
	if n := len(p.queue); len(tracepoints) == 0 || n > 0 && p.queue[n-1].mark {
		p.mu.Unlock()
		return
	}
	for _, id := range tracepoints {
		p.enqueueLocked(&outgoing{key: placeKey{id: id}, mark: true}, data)
	}
	p.mu.Unlock()
	p.poke()
}

// markedTracepoints returns the tracepoints of the last watermarks offered.
func (p *publisher) markedTracepoints() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.marked
}

// enqueue appends out with its message and wakes run. The lock must be
// held; enqueue releases it.
func (p *publisher) enqueue(out *outgoing, data []byte) {
	p.enqueueLocked(out, data)
	p.mu.Unlock()
	p.poke()
}

// enqueueLocked appends out with its message. Lock should be held.
func (p *publisher) enqueueLocked(out *outgoing, data []byte) {
	p.seq++
	id := p.idBase + strconv.FormatUint(p.seq, 10)
	if out.mark {
		out.msg = p.hits.MarkMsg(out.key.id, data, id)
	} else {
		out.msg = p.hits.Msg(out.key.id, data, id)
	}
	p.queue = append(p.queue, out)
	p.bytes += len(data)
	if p.empty == nil {
		p.empty = make(chan struct{})
	}
	p.gauge()
}

// poke wakes run.
func (p *publisher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// gauge updates the buffer metrics. Lock should be held.
func (p *publisher) gauge() {
	p.metrics.buffered.Set(float64(len(p.queue)))
	p.metrics.bufferedBytes.Set(float64(p.bytes))
}

// at returns the i-th unacknowledged hit, or nil.
func (p *publisher) at(i int) *outgoing {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < len(p.queue) {
		return p.queue[i]
	}
	return nil
}

// pop drops out, acknowledged, from the front of the queue.
func (p *publisher) pop(out *outgoing) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) > 0 && p.queue[0] == out {
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.bytes -= len(out.msg.Data)
		p.emptied()
		return
	}
	p.removeLocked(func(o *outgoing) bool { return o == out })
}

// remove drops the hits gone says are done with from the queue.
func (p *publisher) remove(gone func(*outgoing) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked(gone)
}

// Lock should be held.
func (p *publisher) removeLocked(gone func(*outgoing) bool) {
	kept := p.queue[:0]
	for _, o := range p.queue {
		if gone(o) {
			p.bytes -= len(o.msg.Data)
			continue
		}
		kept = append(kept, o)
	}
	clear(p.queue[len(kept):])
	p.queue = kept
	p.emptied()
}

// emptied wakes flush if the queue is empty, and updates the metrics. Lock
// should be held.
func (p *publisher) emptied() {
	if len(p.queue) == 0 && p.empty != nil {
		close(p.empty)
		p.empty = nil
	}
	p.gauge()
}

type flight struct {
	out *outgoing
	f   jetstream.PubAckFuture
}

// run publishes until ctx ends. What is still unacknowledged then is lost;
// flush first to deliver it.
func (p *publisher) run(ctx context.Context) {
	defer close(p.done)
	var (
		inflight []flight
		window   = fleet.NewAckWindow(publishWindow)
		broken   bool // a failure: send nothing until retryAt and connected
		retryAt  time.Time
		backoff  = retryMin
		down     time.Time // when the current streak of failures began
		resent   int       // hits sent again since
	)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	fail := func(err error) {
		p.metrics.publishFailures.Inc()
		if down.IsZero() {
			down = time.Now()
			p.log.Warn("NATS does not take hits; keeping them until it does", "err", err, "buffered", p.len())
		}
		if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			// The stream may be behind rather than the connection down:
			// fewer in flight, so that acks come within their timeout.
			window.TimedOut()
			if err := p.c.Probe(); err != nil {
				p.log.Warn("checking the connection to NATS", "err", err)
			}
		}
		stored := p.settle(inflight)
		resent += len(inflight) - stored
		inflight = inflight[:0]
		broken, retryAt = true, time.Now().Add(backoff)
		backoff = min(2*backoff, retryMax)
	}
	for {
		if broken && !time.Now().Before(retryAt) && p.c.Connected() {
			broken = false
		}
		for !broken && p.c.Connected() && len(inflight) < window.Size() {
			out := p.at(len(inflight))
			if out == nil {
				break
			}
			f, err := p.hits.Publish(out.msg)
			if err != nil {
				if tooBig(err) {
					p.refuse(out, err)
					continue
				}
				fail(err)
				break
			}
			inflight = append(inflight, flight{out, f})
		}
		var (
			okCh  <-chan *jetstream.PubAck
			errCh <-chan error
			tick  <-chan time.Time
		)
		if len(inflight) > 0 {
			okCh, errCh = inflight[0].f.Ok(), inflight[0].f.Err()
		}
		if broken || !p.c.Connected() {
			// Poll for the connection: a reconnect raises no event here.
			d := time.Until(retryAt)
			retry.Reset(max(d, retryMin))
			tick = retry.C
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-tick:
		case <-okCh:
			out := inflight[0].out
			inflight = inflight[1:]
			p.pop(out)
			p.counted(out)
			window.Acked()
			backoff = retryMin
			if !down.IsZero() {
				p.log.Info("NATS takes hits again", "down", time.Since(down).Round(time.Millisecond), "resent", resent, "buffered", p.len())
				down, resent = time.Time{}, 0
			}
		case err := <-errCh:
			if tooBig(err) {
				// Sending it again cannot help.
				out := inflight[0].out
				inflight = inflight[1:]
				p.refuse(out, err)
				continue
			}
			fail(err)
		}
	}
}

// settle drops from the queue the hits in flight that were stored before a
// failure, so that the rest are sent again in order, and returns how many
// were. It does not wait for the others: one sent again that was stored
// meanwhile is known by its message id and not stored twice.
func (p *publisher) settle(inflight []flight) int {
	n := 0
	for _, fl := range inflight {
		select {
		case <-fl.f.Ok():
			fl.out.acked = true
			p.counted(fl.out)
			n++
		default:
		}
	}
	if n > 0 {
		p.remove(func(o *outgoing) bool { return o.acked })
	}
	return n
}

// counted counts a hit the stream took.
func (p *publisher) counted(out *outgoing) {
	if !out.mark {
		p.metrics.hits.WithLabelValues(out.key.id).Inc()
	}
}

// refuse drops a hit the stream will never take and reports it lost.
func (p *publisher) refuse(out *outgoing, err error) {
	if out.mark {
		p.pop(out)
		return
	}
	p.log.Warn("the hit stream refused a hit; it is lost", "tracepoint", out.key.id, "pid", out.key.pid, "bytes", len(out.msg.Data), "err", err)
	p.pop(out)
	p.metrics.publishFailures.Inc()
	p.refused(out.key, out.dropped)
}

// tooBig tells a hit over the server's or the stream's size limit.
func tooBig(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) ||
		errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

func (p *publisher) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// flush waits until every hit offered so far is acknowledged, or ctx ends;
// it returns how many were left.
func (p *publisher) flush(ctx context.Context) int {
	p.mu.Lock()
	empty := p.empty
	p.mu.Unlock()
	if empty != nil {
		select {
		case <-empty:
		case <-ctx.Done():
		case <-p.done:
		}
	}
	return p.len()
}
