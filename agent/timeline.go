package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
)

// DefaultTimelineLag is the agent's default promise to the timeline: each
// hit reaches the stream within it of its capture. It covers the eBPF
// backend's decoding in bursts (at most 100 ms) and publishing.
const DefaultTimelineLag = 150 * time.Millisecond

// How often the agent compares its clock with the server's, and publishes
// a watermark while it has hits to publish (otherwise every
// fleet.WatermarkKeepalive).
const (
	clockEvery      = time.Second
	clockFirst      = 5 // exchanges in quick succession at start
	watermarkActive = 50 * time.Millisecond
	activeFor       = 2 * time.Second // after a hit, the agent counts as active this long
	raisedFor       = 5 * time.Second
)

// timekeeper keeps the agent's side of the timeline: its clock (skewed in
// tests), the offset of that clock to the server's, and the lag it
// promises in its watermarks.
type timekeeper struct {
	skew time.Duration
	lag  time.Duration // the configured promise

	// mu guards the fields below.
	mu        sync.Mutex
	clock     fleet.Clock
	clockErr  string    // why there is no reading, when there is none
	lastHit   time.Time // when a hit was last offered
	raised    time.Duration
	raisedAt  time.Time
	lastMark  time.Time
	markDirty bool // the promise was raised: say so at once

	// wake tells runWatermarks that a watermark may be due before it
	// planned to look: the agent became active, or raised its promise.
	wake chan struct{}
}

func (k *timekeeper) now() time.Time { return time.Now().Add(k.skew) }

// reading returns the clock estimate in force, nil if none.
func (k *timekeeper) reading() *fleet.ClockReading {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.readingLocked(k.now())
}

// readingLocked is reading at agent time now. Lock should be held.
func (k *timekeeper) readingLocked(now time.Time) *fleet.ClockReading {
	r, ok := k.clock.Reading(now)
	if !ok {
		return nil
	}
	return &r
}

// info fills the clock fields of the host profile.
func (k *timekeeper) info(hi *fleet.HostInfo) {
	hi.Clock = k.reading()
	if hi.Clock == nil {
		k.mu.Lock()
		hi.ClockError = k.clockErr
		k.mu.Unlock()
		if hi.ClockError == "" {
			hi.ClockError = "not compared with the server's yet"
		}
	}
}

// publishing notes a hit captured at capture, about to be published,
// raises the promise if the hit is close to breaking it, and returns the
// clock estimate in force for it, nil if none. (One read of the clock and
// one lock a hit, where a hit took two of each.)
func (k *timekeeper) publishing(capture time.Time) *fleet.ClockReading {
	now := k.now()
	age := now.Sub(capture)
	k.mu.Lock()
	defer k.mu.Unlock()
	idle := now.Sub(k.lastHit) >= activeFor
	k.lastHit = now
	if age > k.promiseLocked(now)*4/5 {
		k.raised = min(max(k.raised, age*5/4+10*time.Millisecond), fleet.DefaultMaxHold)
		k.raisedAt = now
		k.markDirty = true
	}
	if idle || k.markDirty {
		select {
		case k.wake <- struct{}{}:
		default:
		}
	}
	return k.readingLocked(now)
}

// untilDue returns how long runWatermarks may wait before a watermark may
// be due: while the agent is active, until watermarkActive after the last
// one; otherwise until the keepalive, as publishing wakes it if a hit comes
// first. A wake-up costs an agent far more than its work (the runtime's
// threads wake with it): waking every watermarkActive/2, half of the
// wake-ups for nothing, an agent with a hit every 500 ms spent 24.1 ms of
// CPU a second, 21.3 waking when a watermark is due (make bench-agent,
// medians of 4 runs each).
func (k *timekeeper) untilDue() time.Duration {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	every := fleet.WatermarkKeepalive
	switch {
	case k.markDirty:
		return time.Millisecond
	case now.Sub(k.lastHit) < activeFor:
		every = watermarkActive
	}
	return max(k.lastMark.Add(every).Sub(now), time.Millisecond)
}

// promiseLocked is the lag promised now. Lock should be held.
func (k *timekeeper) promiseLocked(now time.Time) time.Duration {
	if k.raised > k.lag && now.Sub(k.raisedAt) < raisedFor {
		return k.raised
	}
	k.raised = 0
	return k.lag
}

// runClock compares the agent's clock with the server's until ctx ends.
func (k *timekeeper) runClock(ctx context.Context, c *fleet.Client, log *slog.Logger) {
	t := time.NewTimer(0)
	defer t.Stop()
	said := ""
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, time.Second)
		t0, ts, t3, err := c.AskClock(actx, k.now)
		cancel()
		k.mu.Lock()
		if err == nil {
			k.clock.Add(t0, ts, t3)
			k.clockErr = ""
		} else {
			k.clockErr = clockError(err)
		}
		why := k.clockErr
		k.mu.Unlock()
		if why != said && ctx.Err() == nil {
			if why != "" {
				log.Warn("cannot compare the clock with the server's; hits are placed in the timeline by their arrival", "why", why)
			} else if said != "" {
				log.Info("comparing the clock with the server's again")
			}
			said = why
		}
		if n < clockFirst {
			t.Reset(20 * time.Millisecond)
		} else {
			t.Reset(clockEvery)
		}
	}
}

func clockError(err error) string {
	if errors.Is(err, nats.ErrNoResponders) {
		return "no clock server answers: run `riptrace server`, which answers it"
	}
	return err.Error()
}

// watermark returns the watermark to publish now, or nil if none is due.
// heldSince is the capture time of the oldest hit the agent holds back
// (zero if none).
func (k *timekeeper) watermark(host string, heldSince time.Time, force bool) *fleet.Watermark {
	now := k.now()
	r := k.reading()
	k.mu.Lock()
	defer k.mu.Unlock()
	active := now.Sub(k.lastHit) < activeFor
	due := force || k.markDirty || now.Sub(k.lastMark) >= fleet.WatermarkKeepalive ||
		active && now.Sub(k.lastMark) >= watermarkActive
	if !due {
		return nil
	}
	lag := k.promiseLocked(now)
	mark := now.Add(-lag)
	if !heldSince.IsZero() && heldSince.Before(mark) {
		// A hit held back (its tracepoint is being set) leaves later:
		// the promise stretches to cover it.
		mark = heldSince.Add(-time.Nanosecond)
		lag = max(lag, now.Sub(heldSince)+k.lag)
	}
	k.lastMark, k.markDirty = now, false
	return &fleet.Watermark{Host: host, Time: mark.UnixNano(), Lag: fleet.Duration(lag), Clock: r}
}

// runWatermarks publishes the agent's watermarks until ctx ends. An idle
// agent looks only when its keepalive is due, or a hit wakes it: looking
// every 25 ms kept the runtime's scheduler awake, and was most of what an
// idle agent cost.
func (a *Agent) runWatermarks(ctx context.Context) {
	timer := time.NewTimer(watermarkActive / 2)
	defer timer.Stop()
	first := true
	for {
		if w := a.tk.watermark(a.cfg.Host, a.heldSince(), first); w != nil {
			a.pub.offerMarks(a.placedTracepoints(), fleet.Encode(w))
			first = false
		}
		timer.Reset(a.tk.untilDue())
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-a.tk.wake:
		}
	}
}

// placedTracepoints returns the tracepoints placed in a process of the
// host, sorted: those whose readers await the agent's watermarks. A
// tracepoint that leaves gets none after: its readers have stopped, or
// see the agent fall silent for it.
func (a *Agent) placedTracepoints() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for k := range a.placed {
		if !slices.Contains(ids, k.id) {
			ids = append(ids, k.id)
		}
	}
	slices.Sort(ids)
	return ids
}

// heldSince returns the capture time of the oldest hit held while its
// tracepoint is set, held by a backend, or on its way from a backend to
// the stream, zero if none.
func (a *Agent) heldSince() time.Time {
	a.mu.Lock()
	var oldest int64
	for _, p := range a.placed {
		if t := p.oldestHeld(); t != 0 && (oldest == 0 || t < oldest) {
			oldest = t
		}
	}
	var holders []interface{ Holding() int64 }
	for _, att := range a.attached {
		if h, ok := att.target.(interface{ Holding() int64 }); ok {
			holders = append(holders, h)
		}
		// Delivered by the backend, not yet queued for the stream.
		if t := att.inTransit(); t != 0 && (oldest == 0 || t < oldest) {
			oldest = t
		}
		if t := att.transit.Oldest(); t != 0 && (oldest == 0 || t < oldest) {
			oldest = t
		}
	}
	a.mu.Unlock()
	// A backend that holds hits before it delivers them (the eBPF
	// backend decodes in bursts) says since when; asked without the
	// agent's lock, which its hits need to leave.
	for _, h := range holders {
		if t := h.Holding(); t != 0 && (oldest == 0 || t < oldest) {
			oldest = t
		}
	}
	if oldest == 0 {
		return time.Time{}
	}
	return time.Unix(0, oldest).Add(a.tk.skew)
}

// oldestHeld returns the capture time of the oldest hit p holds while it
// is installed, or releases after, 0 if none.
func (p *placement) oldestHeld() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	oldest := p.releasing
	for _, h := range p.early {
		if oldest == 0 || h.Time < oldest {
			oldest = h.Time
		}
	}
	return oldest
}
