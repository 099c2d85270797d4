package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// writeStatuses brings the status bucket in line with what the agent knows,
// writing only the entries that changed and withdrawing those that no longer
// apply. Hit counts alone count as a change only with counts, so that a busy
// tracepoint is rewritten once per heartbeat, not on every pass. recMu
// should be held.
func (a *Agent) writeStatuses(ctx context.Context, counts bool) {
	now := time.Now().UTC()
	a.mu.Lock()
	next := make(map[string]fleet.Status)
	for k, what := range a.waiting {
		next[fleet.StatusKey(k.id, a.cfg.Host, k.pid)] = fleet.Status{Tracepoint: k.id, Host: a.cfg.Host, Pid: k.pid, Process: a.processRefLocked(k.pid), State: fleet.StatePending, Message: what}
	}
	for k, pp := range a.placed {
		p := pp.view()
		st := fleet.Status{Tracepoint: k.id, Host: a.cfg.Host, Pid: k.pid, Hits: p.hits, Dropped: p.dropped + p.lost}
		p.droppedStatus(&st)
		st.Process = a.processRefLocked(k.pid)
		switch {
		case p.installing && !p.committed:
			// Set runs: what it installed is said once it returns.
			st.State, st.Message = fleet.StatePending, fmt.Sprintf("installing in pid %d…", k.pid)
		case p.err != nil:
			st.State, st.Message, st.Code = fleet.StateError, p.err.Message, p.err.Code
		case p.done != "":
			st.State, st.Message = fleet.StateDone, p.done
		default:
			pl := p.pl
			st.State, st.Placement = fleet.StateInstalled, &pl
			st.Message = fmt.Sprintf("installed in %s at %s:%d", pl.Function, pl.File, pl.Line)
			switch {
			case pl.BackendWhy != "":
				st.Message += " (" + pl.Backend + ", not ebpf: " + pl.BackendWhy + ")"
			case pl.ProbeWhy != "":
				st.Message += " (" + pl.Backend + ": " + pl.ProbeWhy + ")"
			case pl.Backend != "":
				st.Message += " (" + pl.Backend + ")"
			}
			if pp.warning != "" {
				st.Message += "; warning: " + pp.warning
			}
			if n := p.dropped - p.droppedSeen; n > 0 {
				// Limits protect the process, not hide the tracepoint: it
				// stays installed and says what it costs.
				st.State = fleet.StateThrottled
				by := fmt.Sprintf("by maxHitsPerSecond=%d", pp.spec.Limits.MaxHitsPerSecond)
				if p.throttle != "" {
					by = p.throttle
				}
				st.Message += p.throttled(n, by)
			}
			if p.rearm != "" {
				st.Message += "; " + p.rearm
			}
			if p.lost > 0 {
				st.Message += fmt.Sprintf("; %d hits lost in all: NATS could not take them and the agent's hit buffer was full (raise --buffer-hits or --buffer-bytes to ride out longer outages)", p.lost)
			}
		}
		next[fleet.StatusKey(k.id, a.cfg.Host, k.pid)] = st
	}
	for id, n := range a.hostWide {
		next[fleet.StatusKey(id, a.cfg.Host, 0)] = fleet.Status{Tracepoint: id, Host: a.cfg.Host, State: n.state, Message: n.message}
	}
	for key, e := range a.invalid {
		if fleet.Token(key) == key { // a key that can name a status entry
			next[fleet.StatusKey(key, a.cfg.Host, 0)] = fleet.Status{Tracepoint: key, Host: a.cfg.Host, State: fleet.StateError, Message: e.Message, Code: e.Code}
		}
	}
	var put []fleet.Status
	var del []string
	for key, st := range next {
		old, ok := a.written[key]
		if ok && sameStatus(old, st) && (!counts || old.Hits == st.Hits) {
			continue
		}
		put = append(put, st)
	}
	var last []fleet.Status
	for key, old := range a.written {
		if _, ok := next[key]; ok {
			continue
		}
		del = append(del, key)
		if why := a.withdrawnLocked(old); why != "" && old.State != fleet.StateDone {
			// A deletion carries no words: the entry says first why it
			// goes, so that clients tell the user who and why.
			old.State, old.Message, old.Code, old.Placement = fleet.StateDone, why, "", nil
			last = append(last, old)
		}
	}
	clear(a.ended)
	a.mu.Unlock()

	for _, st := range last {
		st.Updated = now
		if err := a.c.PutStatus(ctx, &st); err != nil {
			a.log.Warn("writing a last status", "tracepoint", st.Tracepoint, "pid", st.Pid, "err", err)
		}
	}

	for _, st := range put {
		st.Updated = now
		key := fleet.StatusKey(st.Tracepoint, st.Host, st.Pid)
		if err := a.c.PutStatus(ctx, &st); err != nil {
			a.log.Warn("writing status", "key", key, "err", err)
			continue
		}
		a.written[key] = st
	}
	for _, key := range del {
		if err := a.c.WithdrawStatus(ctx, key); err != nil {
			a.log.Warn("withdrawing status", "key", key, "err", err)
			continue
		}
		delete(a.written, key)
	}
}

// processRefLocked returns what the agent knows of process pid. Lock should
// be held.
func (a *Agent) processRefLocked(pid int) fleet.ProcessRef {
	if proc := a.procs[pid]; proc != nil {
		return proc.Ref()
	} else if att := a.attached[pid]; att != nil {
		return att.proc.Ref()
	} else if proc := a.outside[pid]; proc != nil {
		return proc.Ref()
	}
	return fleet.ProcessRef{}
}

// withdrawnLocked says why the process entry st is withdrawn while its
// tracepoint stands, or "" when the tracepoint itself went (its owner
// knows why), st is the host's own entry, or the host's entry says why. Lock should be held.
func (a *Agent) withdrawnLocked(st fleet.Status) string {
	if st.Pid == 0 || a.declared[st.Tracepoint] == nil && a.direct[st.Tracepoint] == nil {
		return ""
	}
	if n, ok := a.hostWide[st.Tracepoint]; ok && n.state != fleet.StatePending {
		return "" // expired or quarantined: the host's entry says so
	}
	if a.stopping {
		return fmt.Sprintf("the agent of host %s stopped: process %d runs on, untraced until an agent starts again", st.Host, st.Pid)
	}
	if why := a.ended[st.Pid]; why != "" {
		return why
	}
	if a.procs[st.Pid] == nil && a.outside[st.Pid] == nil {
		return fmt.Sprintf("process %d exited", st.Pid)
	}
	return fmt.Sprintf("process %d no longer matches the tracepoint's selector", st.Pid)
}

// endReason words why the target of pid closed; err is what detaching
// returned.
func endReason(pid int, err error) string {
	var exited ErrProcessExited
	switch {
	case errors.As(err, &exited):
		return exited.Error()
	case err != nil:
		return fmt.Sprintf("the agent lost process %d: %v", pid, err)
	}
	return fmt.Sprintf("process %d exited", pid)
}

// droppedStatus fills in st's drops beyond the count: whether it is a lower
// bound, the estimate of the hits run with the probes out, and how many
// times they were out with none.
func (p placementView) droppedStatus(st *fleet.Status) {
	switch {
	case p.waiting:
		// The first estimate waits to be confirmed: none yet.
		st.DroppedLowerBound = true
	case p.uncounted > 0:
		st.DroppedLowerBound = true
		st.DroppedEstimate = st.Dropped + p.uncounted
	}
	if p.unestimated > 0 {
		// Some hits ran with the probes out that no one could estimate:
		// the estimate, if any, is of the others, and says so.
		st.DroppedLowerBound = true
		st.DroppedUnestimated = p.unestimated
	}
}

// throttled is what a throttled status says of the n hits dropped by (the
// limit, or the cause) since the last report, and of those not counted.
func (p placementView) throttled(n uint64, by string) string {
	u, unestimated := p.uncounted-p.uncountedSeen, p.unestimated-p.unestimatedSeen
	switch {
	case unestimated > 0 && u > 0:
		return fmt.Sprintf("; throttled: at least %d hits dropped %s since the last report, an estimated %d, and more that %d of its put-backs could not estimate (the probe comes out once its allowance is spent and goes back for the next second: the hits meanwhile cost the process nothing and are not counted; they are estimated from the rate seen with the probe in, except where that rate says nothing of the rate without, as where the probe held the line, the host starved the process, or the line slowed or stopped while the probe was out)", n, by, n+u, unestimated)
	case unestimated > 0:
		return fmt.Sprintf("; throttled: at least %d hits dropped %s since the last report (the probe comes out once its allowance is spent and goes back for the next second: the hits meanwhile cost the process nothing and are not counted, nor estimated: the rate the line ran at with the probe in says nothing of its rate without, as where the probe held it, the host starved the process, or the line slowed or stopped while the probe was out)", n, by)
	case u > 0:
		return fmt.Sprintf("; throttled: at least %d hits dropped %s since the last report, an estimated %d (the probe comes out once its allowance is spent and goes back for the next second: the hits meanwhile cost the process nothing and are estimated from the rate seen with the probe in, not counted)", n, by, n+u)
	default:
		return fmt.Sprintf("; throttled: %d hits dropped %s since the last report (the process runs on)", n, by)
	}
}

// sameStatus compares everything but the hit count. The drops are
// compared on their own: a line gone quiet tells its last in a notice that
// may count none and change no word of the message.
func sameStatus(a, b fleet.Status) bool {
	return a.State == b.State && a.Message == b.Message && a.Code == b.Code && a.Process == b.Process &&
		a.Dropped == b.Dropped && a.DroppedLowerBound == b.DroppedLowerBound && a.DroppedEstimate == b.DroppedEstimate && a.DroppedUnestimated == b.DroppedUnestimated
}

// flushHitCounts refreshes the hit counts in the status entries.
func (a *Agent) flushHitCounts(ctx context.Context) {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	a.writeStatuses(ctx, true)
	// A heartbeat period without new drops ends the throttled state.
	a.mu.Lock()
	for _, p := range a.placed {
		p.seen()
	}
	a.mu.Unlock()
}
