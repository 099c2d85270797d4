package agent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/riptrace/riptrace/fleet"
)

// Defaults of the hit buffer: ten seconds at 1k hits/s fit many times over.
const (
	DefaultBufferHits  = fleet.DefaultBufferHits
	DefaultBufferBytes = fleet.DefaultBufferBytes
)

// publisher delivers the agent's hits to the hit stream through a
// fleet.Outbox, which keeps them in order through outages and backs off
// under overload, and counts what it could not deliver: a hit refused
// for its size, and those still kept when the agent stops, are lost to
// the agent's metrics and the tracepoint's status, as are those offered
// while the buffer is full (the caller counts those).
type publisher struct {
	out *fleet.Outbox[hitTag]
	log *slog.Logger
	// refused is told of a hit that never reaches the stream: it is
	// lost, like one that did not fit in the buffer.
	refused func(k placeKey, dropped uint64)
	done    <-chan struct{} // closed when run returns
}

// hitTag is what the outbox keeps of a hit beside its message: whose it
// is, and the dropped count it carries, passed on if it is lost.
type hitTag struct {
	key     placeKey
	dropped uint64
}

func newPublisher(c *fleet.Client, host, idBase string, maxHits, maxBytes int, log *slog.Logger, m *metrics) (*publisher, error) {
	p := &publisher{log: log}
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[hitTag]{
		Host: host, IDBase: idBase, MaxHits: maxHits, MaxBytes: maxBytes, Log: log,
		Stored: func(t hitTag) { m.hits.WithLabelValues(t.key.id).Inc() },
		Lost:   p.lost,
		Failed: func(error) { m.publishFailures.Inc() },
		Buffered: func(hits, bytes int) {
			m.buffered.Set(float64(hits))
			m.bufferedBytes.Set(float64(bytes))
		},
	})
	if err != nil {
		return nil, err
	}
	p.out, p.done = out, out.Done()
	return p, nil
}

// lost counts a hit that never reaches the stream.
func (p *publisher) lost(t hitTag, err error) {
	if !errors.Is(err, fleet.ErrOutboxStopped) {
		p.log.Warn("the hit stream refused a hit; it is lost", "tracepoint", t.key.id, "pid", t.key.pid, "err", err)
	}
	if p.refused != nil {
		p.refused(t.key, t.dropped)
	}
}

// offer queues hit h of tracepoint k.id in process k.pid; with more, it
// leaves once the caller offers another without, or wakes p. It returns
// false, keeping nothing, if the buffer is full: the caller counts the hit
// as lost.
func (p *publisher) offer(k placeKey, h *fleet.Hit, more bool) bool {
	return p.out.OfferHit(h, hitTag{k, h.Dropped}, more)
}

// wake sends the hits offered with more.
func (p *publisher) wake() { p.out.Wake() }

// offerMarks queues an encoded watermark for each of tracepoints behind
// the hits offered before them (see fleet.Outbox.OfferMarks).
func (p *publisher) offerMarks(tracepoints []string, data []byte) {
	p.out.OfferMarks(tracepoints, data)
}

// markedTracepoints returns the tracepoints of the last watermarks offered.
func (p *publisher) markedTracepoints() []string { return p.out.MarkedTracepoints() }

// run publishes until ctx ends. What is still unacknowledged then is lost,
// and counted so; flush first to deliver it.
func (p *publisher) run(ctx context.Context) { p.out.Run(ctx) }

// flush waits until every hit offered so far is acknowledged, or ctx ends;
// it returns how many were left.
func (p *publisher) flush(ctx context.Context) int { return p.out.Flush(ctx) }
