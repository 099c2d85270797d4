package delve

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// RecommendedStopBudget is the fraction of each second a target may spend
// stopped by its tracepoints unless configured otherwise: `riptrace agent
// --stop-budget` defaults to it (a zero agent.Config.StopBudget is no budget).
const RecommendedStopBudget = 0.1

// codeStopBudget is the error code of a tracepoint removed because its
// traps alone cost more than the stop budget.
const codeStopBudget = fleet.CodeStopBudget

// stopBudget keeps one target from being stopped more than a fraction of
// each second. It is a token bucket of stopped time: it fills at fraction
// seconds per second, up to fraction × 1 s, and every stop spends what it
// lasted. A hit met with the bucket empty is dropped before its capture,
// and its breakpoint comes out until its next window if its rate limit
// allows that. If the stops that captured nothing and left their
// breakpoint in alone take more than the budget over a second, dropping
// cannot help (the bare traps of a hot line cost more) and the hottest
// tracepoint is removed (see target.enforceBudget).
//
// A stop lasts from the trap to the resume. The worker times what it does
// itself (from Continue's return to the next Continue) and Delve's stepping
// over breakpoints before it resumes the process (until ResumeNotify);
// Delve's handling of the trap happens inside Continue, where it cannot be
// timed, so each stop is also charged trapCost (see timedStop).
//
// Owned by the target's loop goroutine, except stopped.
type stopBudget struct {
	fraction float64 // of each second; 0 or less: no budget
	tokens   float64 // seconds of stop still allowed; negative: in debt
	last     time.Time
	trapCost time.Duration // 0 until a stop was timed
	// manual and traps are the last manual stops and trap stops timed,
	// oldest first, for trapCost.
	manual, traps []time.Duration

	stopped atomic.Int64 // nanoseconds stopped since attach, in all
}

func (b *stopBudget) init(fraction float64, now time.Time) {
	b.fraction = fraction
	b.tokens = fraction
	b.last = now
}

func (b *stopBudget) refill(now time.Time) {
	if b.fraction <= 0 {
		return
	}
	b.tokens = min(b.fraction, b.tokens+now.Sub(b.last).Seconds()*b.fraction)
	b.last = now
}

// spend charges a stop of d.
func (b *stopBudget) spend(d time.Duration, now time.Time) {
	if d <= 0 {
		return
	}
	b.stopped.Add(int64(d))
	b.refill(now)
	if b.fraction > 0 {
		b.tokens -= d.Seconds()
	}
}

// timedStop records how long a stop took, from the request to
// Continue's return for a manual one, from the resume for a trap, and sets
// trapCost. Each bounds from above what Delve took to stop the process, as
// it also holds time the process ran: a manual stop on a loaded host waits
// for a thread of the process to be scheduled and take the signal, where
// a trap stops its thread at once (a stressed run timed one at 4.6 s),
// and a trap's cycle holds the run up to it. trapCost is the smaller of
// the medians of the last timedStops of each: slow stops must be most of
// them to raise it. A moving average of manual stops alone charged
// 100–250 ms to every trap of a hot line whose cycles took under a
// millisecond, and a single trap a second spent a 5% budget twice over.
func (b *stopBudget) timedStop(d time.Duration, manual bool) {
	times := &b.traps
	if manual {
		times = &b.manual
	}
	if len(*times) == timedStops {
		*times = (*times)[1:]
	}
	*times = append(*times, d)
	b.trapCost = 0
	for _, ts := range [][]time.Duration{b.manual, b.traps} {
		if len(ts) == 0 {
			continue
		}
		sorted := slices.Sorted(slices.Values(ts))
		if m := sorted[len(sorted)/2]; b.trapCost == 0 || m < b.trapCost {
			b.trapCost = m
		}
	}
}

// timedStops is how many of the last stops of each kind trapCost is a
// median of.
const timedStops = 7

// trapCharge is what a breakpoint stop that Continue returned after cycle
// (from the resume) is charged for Delve's part of it.
func (b *stopBudget) trapCharge(cycle time.Duration) time.Duration {
	if b.trapCost == 0 || b.trapCost > cycle {
		return cycle
	}
	return b.trapCost
}

// allow reports whether a hit may be captured now.
func (b *stopBudget) allow(now time.Time) bool {
	b.refill(now)
	return b.fraction <= 0 || b.tokens > 0
}

// untilAllowed returns how long from now until allow will say yes again.
func (b *stopBudget) untilAllowed(now time.Time) time.Duration {
	b.refill(now)
	if b.fraction <= 0 || b.tokens > 0 {
		return 0
	}
	return time.Duration((-b.tokens/b.fraction)*float64(time.Second)) + time.Millisecond
}

// Stopped returns how long the process has been stopped since attach.
func (b *stopBudget) Stopped() time.Duration { return time.Duration(b.stopped.Load()) }

// held is how long the stops held the process's threads, for
// agent.Disarm.Held: twice the time stopped. A thread resumed still waits
// to run again, on a loaded host about as long as it was stopped: counted
// once, the stops left estimates 0.15–0.24 of the truth for a line run
// 9,000 times a second (make bench-limits with -n 1 -clients 1, load
// 11–15).
func (b *stopBudget) held() time.Duration { return 2 * b.Stopped() }

// percent renders the budget for messages.
func (b *stopBudget) percent() string { return fmt.Sprintf("%g%%", b.fraction*100) }
