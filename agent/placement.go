package agent

import (
	"fmt"
	"sync"

	"github.com/riptrace/riptrace/fleet"
)

// placement is one tracepoint in one process, from the moment the agent
// starts installing it until it is removed. Hits and faults of a tracepoint
// can reach the agent before the backend's Set has returned, so a placement
// has an installing phase, and the pump and place meet on it:
//
//	begin (newPlacement): Set runs; hits are held, faults recorded.
//	hold: a hit that comes while installing waits, in order.
//	commit: Set returned a placement; the held hits leave first (next),
//	        newer ones queue behind them, then hits leave as they come.
//	fail: Set failed; held hits are dropped (a denied function's hits
//	      never leave). A fault met while running fails it too.
//	done: maxHits reached; later hits are dropped until it is cleared.
//
// Every transition is a method that takes mu; none calls out while holding
// it, so the agent's lock may be held around them but never taken inside.
type placement struct {
	spec        *fleet.Spec
	fingerprint string
	warning     string  // why the line may not be the one meant (source sync); set before begin
	log         logPlan // how the agent writes the log message; set before it is recorded, never changed

	// mu guards the fields below.
	mu              sync.Mutex
	installing      bool // Set has not returned, or held hits are still leaving
	committed       bool // Set returned a placement
	pl              Placement
	err             *fleet.Error
	hits            uint64
	dropped         uint64 // hits the rate limit dropped, in all
	throttle        string // why hits were last dropped, if not the rate limit (Hit.Throttle)
	lost            uint64 // hits lost while NATS could not take them, in all
	uncounted       uint64 // hits estimated to have run while the probes were out, in all (Hit.Uncounted.N)
	unestimated     uint64 // the times the probes were out with no estimate (Hit.Uncounted.Unknown): uncounted leaves their hits out
	waiting         bool   // the last hit said an estimate waits (Hit.Waiting): uncounted is not all yet
	rearm           string // how the backend re-arms the probes when it backed off (Hit.Rearm)
	unreported      uint64 // hits dropped or lost since the last hit that left
	droppedSeen     uint64 // dropped at the last heartbeat: more since means throttled
	uncountedSeen   uint64 // uncounted at the last heartbeat
	unestimatedSeen uint64 // unestimated at the last heartbeat
	done            string // why the tracepoint stopped here (maxHits reached)
	early           []Hit  // hits held while installing
	// releasing is the capture time of the held hit next handed out
	// and not yet offered to the stream (see released), 0 if none: a
	// watermark stays before it as before the hits still held.
	releasing int64
	halted    bool // quarantined while installed: its hits are dropped until it is cleared
}

// maxEarly bounds the hits a placement holds while its Set runs; more are
// counted as dropped.
const maxEarly = 1024

// newPlacement begins placing spec: until commit or fail, hits are held.
func newPlacement(spec *fleet.Spec, warning string) *placement {
	return &placement{spec: spec, fingerprint: fingerprint(spec), warning: warning, installing: true}
}

// failed returns a placement that never began: the tracepoint cannot go
// into the process, for the reason err.
func failed(spec *fleet.Spec, warning string, err error) *placement {
	return &placement{spec: spec, fingerprint: fingerprint(spec), warning: warning, err: fleet.AsError(err)}
}

// hitAction says what the pump does with a hit after accept.
type hitAction int

const (
	hitDropped   hitAction = iota // the placement takes no more hits
	hitHeld                       // held until the held hits before it leave
	hitFaulted                    // a fault: the placement failed
	hitPublished                  // counted: publish the returned hit
)

// counted is a hit the placement counted, to publish.
type counted struct {
	hit        *Hit      // carrying the drops not yet reported
	own        uint64    // the drops the backend reported with it
	reachedMax bool      // it reached maxHits: the reconciler clears the tracepoint
	uncounted  Uncounted // what it said of uncounted drops
}

// disarmed records what h says of the probes being out: the hits estimated
// to have run meanwhile, and the backend's backoff. Lock should be held.
func (p *placement) disarmed(h *Hit) {
	p.uncounted += h.Uncounted.N
	if h.Uncounted.Unknown {
		p.unestimated++
	}
	p.waiting = h.Waiting
	if h.Uncounted.Any() || h.Rearm != "" {
		p.rearm = h.Rearm
	}
}

// accept takes a hit (or fault) from the pump: it holds it while
// installing, fails the placement on a fault, and counts it otherwise
// (hitPublished, with c to publish). heldDrops is what a hit that could not
// be held adds to the dropped count.
func (p *placement) accept(h *Hit) (act hitAction, c counted, heldDrops uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.done != "" || p.err != nil || p.halted:
		return hitDropped, counted{}, 0
	case h.Fault != nil:
		// The backend removed the tracepoint. Hits held before the fault
		// still leave when Set returns: they were taken. Those it dropped
		// since its last hit are counted with the removal.
		p.err = h.Fault
		p.dropped += h.Dropped
		return hitFaulted, counted{}, h.Dropped
	case h.DropsOnly:
		// No hit: only drops to count, and why, for the status.
		p.dropped += h.Dropped
		p.unreported += h.Dropped
		if h.Dropped > 0 {
			p.throttle = h.Throttle
		}
		p.disarmed(h)
		return hitHeld, counted{}, h.Dropped
	case p.installing:
		// Held until Set returns: the function the line is in may be
		// denied, and then no hit of it may leave.
		if len(p.early) < maxEarly {
			p.early = append(p.early, *h)
			return hitHeld, counted{}, 0
		}
		n := h.Dropped + 1
		p.dropped += n
		p.unreported += n
		return hitHeld, counted{}, n
	}
	return hitPublished, p.countLocked(h), 0
}

// countLocked counts hit h, and adds to it the drops it carries on. Lock
// should be held.
func (p *placement) countLocked(h *Hit) counted {
	c := counted{own: h.Dropped, uncounted: h.Uncounted}
	p.hits++
	p.dropped += h.Dropped
	if h.Dropped > 0 {
		p.throttle = h.Throttle
	}
	p.disarmed(h)
	if max := p.spec.Limits.MaxHits; max > 0 && p.hits >= uint64(max) {
		p.done = fmt.Sprintf("maxHits (%d) reached", max)
		c.reachedMax = true
	}
	// Hits dropped or lost since the last one that left travel with this
	// one.
	h.Dropped += p.unreported
	p.unreported = 0
	c.hit = h
	return c
}

// commit records what Set installed; the held hits leave next, in order.
func (p *placement) commit(pl Placement) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pl, p.committed = pl, true
}

// next returns the next held hit to publish, counted, after commit. When
// none is left, or maxHits was reached, the placement stops installing and
// next returns ok false: from then on the pump publishes hits as they come.
// Each hit is published before next is called again, so that they leave in
// the order they came.
func (p *placement) next() (c counted, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.early) == 0 || p.done != "" || !p.committed || p.halted {
		p.early, p.installing, p.releasing = nil, false, 0
		return counted{}, false
	}
	h := &p.early[0]
	p.early = p.early[1:]
	p.releasing = h.Time
	return p.countLocked(h), true
}

// released says the hit next handed out last is offered to the stream.
func (p *placement) released() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releasing = 0
}

// fail ends the placement with err: Set failed, or what it installed was
// refused or cleared. Held hits are dropped.
func (p *placement) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = fleet.AsError(err)
	p.early, p.installing = nil, false
}

// halt drops the placement's hits from now on: it was quarantined while
// installed, and the reconciler clears it.
func (p *placement) halt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.halted = true
	p.early = nil
}

// lose counts a hit that never reached the stream, and the drops it
// carried; the next hit that leaves reports them.
func (p *placement) lose(dropped uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lost++
	p.unreported += dropped + 1
}

// cleared records that a done placement was cleared from the process.
func (p *placement) cleared() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pl.PCs = nil
}

// seen marks the drops so far as reported: a heartbeat period without new
// ones ends the throttled state.
func (p *placement) seen() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.droppedSeen = p.dropped
	p.uncountedSeen = p.uncounted
	p.unestimatedSeen = p.unestimated
}

// placementView is a placement's state at one instant, for status and
// replies.
type placementView struct {
	installing  bool
	committed   bool
	pl          Placement
	err         *fleet.Error
	hits        uint64
	dropped     uint64
	throttle    string
	lost        uint64
	droppedSeen uint64
	done        string
	// uncounted is the estimate of the hits dropped uncounted while the
	// probes were out; not zero, dropped is a lower bound.
	uncounted, uncountedSeen uint64
	// unestimated counts the times hits ran with the probes out that no
	// one could estimate: uncounted leaves them out.
	unestimated, unestimatedSeen uint64
	waiting                      bool // an estimate waits to be confirmed: none for now
	rearm                        string
}

// active reports whether the tracepoint is, or is being, installed and
// takes hits.
func (v placementView) active() bool { return v.err == nil && v.done == "" }

func (p *placement) view() placementView {
	p.mu.Lock()
	defer p.mu.Unlock()
	return placementView{
		installing: p.installing, committed: p.committed, pl: p.pl, err: p.err, hits: p.hits, dropped: p.dropped,
		throttle: p.throttle, lost: p.lost, droppedSeen: p.droppedSeen, done: p.done,
		uncounted: p.uncounted, uncountedSeen: p.uncountedSeen, unestimated: p.unestimated, unestimatedSeen: p.unestimatedSeen, waiting: p.waiting, rearm: p.rearm,
	}
}
