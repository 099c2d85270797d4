package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// No spec may take an agent down. Bounds refuse what is known to cost too
// much (fleet.Spec.Validate, run again on every spec read from the bucket);
// what still goes wrong is held against the spec, not the agent:
//
//   - a panic while placing a spec, or while publishing one of its hits,
//     quarantines that spec on this host at once;
//   - a backend process (a Delve worker) that dies while tracepoints are set
//     counts a death against each of them; quarantineAfter deaths within
//     quarantineWindow quarantine it. Without this, a spec that kills its
//     worker would be placed again after each restart, forever.
//
// A quarantined spec is cleared from every process of this host and reported
// in one error status (pid 0) with CodeQuarantined. Changing the spec (any
// field but its expiry) or removing and declaring it again lifts the
// quarantine.

// quarantineAfter worker deaths within quarantineWindow quarantine a spec.
// One death is forgiven: a worker may be killed by an operator, or by an
// out-of-memory kill of something else in its container.
const (
	quarantineAfter  = 3
	quarantineWindow = 5 * time.Minute
)

// hostNote is a tracepoint's status for the host as a whole (pid 0).
type hostNote struct {
	state   string
	message string
}

// quarantined is a spec this host no longer tries, and why.
type quarantined struct {
	fingerprint string
	err         *fleet.Error
}

// quarantine stops trying spec on this host. Lock should be held.
func (a *Agent) quarantineLocked(spec *fleet.Spec, why string) {
	if q, ok := a.quarantine[spec.ID]; ok && q.fingerprint == fingerprint(spec) {
		return
	}
	msg := fmt.Sprintf("tracepoint %s is quarantined on host %s: %s. It is no longer tried here; change what it captures or remove it (a changed spec is tried again)", spec.ID, a.cfg.Host, why)
	a.quarantine[spec.ID] = quarantined{fingerprint: fingerprint(spec), err: fleet.Errorf(fleet.CodeQuarantined, "%s", msg)}
	a.log.Error("tracepoint quarantined", "tracepoint", spec.ID, "why", why)
	a.metrics.quarantined.Inc()
}

// quarantinedLocked returns the quarantine of spec, if it is the spec that
// was quarantined. Lock should be held.
func (a *Agent) quarantinedLocked(spec *fleet.Spec) *fleet.Error {
	q, ok := a.quarantine[spec.ID]
	if !ok {
		return nil
	}
	if q.fingerprint != fingerprint(spec) {
		delete(a.quarantine, spec.ID)
		return nil
	}
	return q.err
}

// forgetGoneLocked drops the quarantines and deaths of specs no longer
// declared or requested: declared again, they start afresh. Lock should be
// held.
func (a *Agent) forgetGoneLocked() {
	for id := range a.quarantine {
		if a.declared[id] == nil && a.direct[id] == nil {
			delete(a.quarantine, id)
		}
	}
	for id := range a.deaths {
		if a.declared[id] == nil && a.direct[id] == nil {
			delete(a.deaths, id)
		}
	}
}

// panicked quarantines spec after a panic r while doing what; the agent
// goes on. Lock must not be held.
func (a *Agent) panicked(spec *fleet.Spec, pid int, what string, r any) {
	a.log.Error("panic handling a tracepoint", "tracepoint", spec.ID, "pid", pid, "doing", what, "panic", r, "stack", string(debug.Stack()))
	a.mu.Lock()
	a.quarantineLocked(spec, fmt.Sprintf("the agent panicked %s in pid %d (%v; please report it)", what, pid, r))
	a.mu.Unlock()
	a.poke()
}

// deathSuspectsLocked returns the specs that were set in pid when its
// backend died: those being placed or failed by the death (an internal
// error) if any, else those installed. Lock should be held.
func (a *Agent) deathSuspectsLocked(pid int) []*fleet.Spec {
	var placing, installed []*fleet.Spec
	for k, p := range a.placed {
		if k.pid != pid {
			continue
		}
		switch v := p.view(); {
		case v.done != "":
		case v.installing || v.err != nil && v.err.Code == fleet.CodeInternal:
			placing = append(placing, p.spec)
		case v.err == nil:
			installed = append(installed, p.spec)
		}
	}
	if len(placing) > 0 {
		return placing
	}
	return installed
}

// backendDied counts a death of pid's backend (err, not an exit of the
// process) against the suspects, quarantining those that reach
// quarantineAfter deaths within quarantineWindow.
func (a *Agent) backendDied(pid int, suspects []*fleet.Spec, err error) {
	var exited ErrProcessExited
	if err == nil || errors.As(err, &exited) || len(suspects) == 0 {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range suspects {
		fp := fingerprint(s)
		d := a.deaths[s.ID]
		if d.fingerprint != fp {
			d = deaths{fingerprint: fp}
		}
		recent := d.times[:0]
		for _, t := range d.times {
			if now.Sub(t) < quarantineWindow {
				recent = append(recent, t)
			}
		}
		d.times = append(recent, now)
		a.deaths[s.ID] = d
		a.log.Warn("a backend died while a tracepoint was set", "tracepoint", s.ID, "pid", pid, "deaths", len(d.times), "err", err)
		if len(d.times) >= quarantineAfter {
			a.quarantineLocked(s, fmt.Sprintf("the backend tracing pid %d died %d times in %s while it was set (last: %v)",
				pid, len(d.times), now.Sub(d.times[0]).Round(time.Second), err))
		}
	}
}

// deaths are the recent backend deaths counted against one spec.
type deaths struct {
	fingerprint string
	times       []time.Time
}

// placePanicked ends a place that panicked: the placement fails with the
// quarantine, and whatever the backend installed is cleared. Lock must not
// be held.
func (a *Agent) placePanicked(k placeKey, p *placement, att *attachment, r any) {
	a.panicked(p.spec, k.pid, "placing it", r)
	if att != nil {
		a.clearQuietly(att, k)
	}
	a.mu.Lock()
	err := a.quarantinedLocked(p.spec)
	a.mu.Unlock()
	if err == nil {
		err = fleet.Errorf(fleet.CodeQuarantined, "placing tracepoint %s in pid %d panicked: %v", k.id, k.pid, r)
	}
	p.fail(err)
	a.record(k, p)
}

// clearQuietly clears tracepoint k.id from att, surviving a panic in the
// backend too.
func (a *Agent) clearQuietly(att *attachment, k placeKey) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("panic clearing a quarantined tracepoint", "tracepoint", k.id, "pid", k.pid, "panic", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := att.target.Clear(ctx, k.id); err != nil {
		a.log.Warn("clearing a quarantined tracepoint", "tracepoint", k.id, "pid", k.pid, "err", err)
	}
}

// publishSafely redacts, encodes and offers hit h of placement p, with a
// panic quarantining its tracepoint: its hits are dropped until the
// reconciler clears it. Lock must not be held.
func (a *Agent) publishSafely(k placeKey, p *placement, h *Hit, ref fleet.ProcessRef, more bool) {
	defer func() {
		if r := recover(); r != nil {
			p.halt()
			a.panicked(p.spec, k.pid, "publishing a hit", r)
		}
	}()
	if ref.Revision == "" {
		// The revision the client found for an executable without
		// vcs.revision: the hit's line is a line of it.
		ref.Revision = p.spec.Location.BuildRevision(ref.Build)
	}
	h.Host, h.Process = a.cfg.Host, ref
	// The log message is written from the values once redacted (p.log
	// is set before p is placed, and never changes).
	a.cfg.Redact.Hit(&h.Hit)
	p.log.render(&h.Hit)
	if !a.pub.offer(k, &h.Hit, more) {
		a.lose(k, h.Dropped)
	}
	// Encoded: its variables serve the next hits.
	fleet.ReleaseVariables(&h.Hit)
}
