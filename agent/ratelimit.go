package agent

import (
	"fmt"
	"os"
	"time"
)

// TokenBucket is a token bucket allowing rate hits per second with a burst of
// rate. A rate of zero or less allows everything.
type TokenBucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

// Init sets the rate; the bucket starts full.
func (b *TokenBucket) Init(rate int) {
	b.rate = float64(rate)
	b.tokens = b.rate
}

// Take takes a token at now, if there is one.
func (b *TokenBucket) Take(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Disarm is the side of a rate limit that spares the traced process: once a
// tracepoint's allowance is spent, its backend takes the probes out and
// puts them back a window after the first hit they met, so that the hits
// the limit would drop cost no trap at all. A bucket that holds rate tokens
// is full again a second after its allowance went in one burst: the window
// is a second.
//
// What runs while the probes are out is not counted. Disarm estimates it
// from the rate the line ran at while they were in, traps and all (so
// rather low than high): the counted drops are then a lower bound, the
// estimate added to them a guess.
//
// The hits refused between the moment the allowance was spent and the
// moment the probes came out each cost a trap for nothing. A line so hot
// that they pass wasteLimit a second backs off: the window doubles, up to
// maxBackoff times, and the tracepoint's hits then arrive at rate per window, not
// per second; it comes back a halving at a time once the waste falls.
//
// A Disarm is not safe for concurrent use: its backend's lock guards it.
type Disarm struct {
	base    time.Duration // the window unless backed off: Window, but for tests
	window  time.Duration // 0 until Armed
	armedAt time.Time
	firstAt time.Time // the first hit since armedAt; zero: none yet (see Hit)
	spentAt time.Time // zero: the allowance of this window is not spent
	outAt   time.Time // zero: the probes are in
	taken   int       // hits Take let through in this window
	// rate is the hits a second the last Rearm estimated from, for In.
	rate float64
}

const (
	// Window is how often a tracepoint's probes are put back, unless it
	// backed off.
	Window = time.Second
	// maxBackoff bounds the backoff: the window grows to at most this
	// many times its base.
	maxBackoff = 32
	// wasteLimit is the counted drops a second (traps for nothing) past
	// which the window doubles: at the 5–10 µs a uprobe trap costs on a
	// small VM, 1–2% of a CPU.
	wasteLimit = 2000
)

// WindowEnv names the environment variable that sets the base window
// instead of Window (a Go duration): tests storm the re-arming with it.
const WindowEnv = "RIPTRACE_DISARM_WINDOW"

// baseWindow is Window, or what WindowEnv says.
func baseWindow() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(WindowEnv)); err == nil && d > 0 {
		return d
	}
	return Window
}

// Armed records that the probes went in at now.
func (d *Disarm) Armed(now time.Time) {
	if d.window == 0 {
		d.base = baseWindow()
		d.window = d.base
	}
	d.armedAt, d.firstAt, d.spentAt, d.outAt = now, time.Time{}, time.Time{}, time.Time{}
	d.taken = 0
}

// Hit records a hit the limit met at now (taken or refused). The first
// since the probes went in starts the window: the allowance goes from
// there, and a bucket that holds rate tokens is full again a window after.
// A window started when the probes went in would pass with nothing to
// take where the line did not run at first (a starved process: a stressed
// run saw none of its calls for 660 ms), its bucket full and refilling
// nothing, and the next window would begin with that share of its
// allowance missing. A hit from before the probes went in (a record read
// late) starts none.
func (d *Disarm) Hit(now time.Time) {
	if d.firstAt.IsZero() && !now.Before(d.armedAt) {
		d.firstAt = now
	}
}

// Take is a limit of rate hits a window, for a backend whose probes are
// in again as soon as it puts them back (Delve's breakpoints): it records
// the hit at now (see Hit) and reports whether the window's allowance had
// one left. A window that passes with its allowance not spent ends, and the
// next hit begins a new one.
//
// Unlike a TokenBucket, it gives nothing back while the window lasts. A
// line that runs barely faster than the limit with its probes in (each hit
// a stop of the whole process, tens of milliseconds on a loaded host)
// spends a bucket slowly while it refills: a stressed run saw 118 hits go
// in 1.6 s and 161 in 3.6 s before the breakpoint came out, where a
// window is to hold rate. With Take a window holds at most rate, and
// windows are at least a window apart.
func (d *Disarm) Take(now time.Time, rate int) bool {
	if d.window == 0 {
		d.Armed(now)
	}
	if !d.firstAt.IsZero() && now.Sub(d.firstAt) >= d.window {
		d.firstAt, d.taken = time.Time{}, 0
	}
	d.Hit(now)
	if rate > 0 && d.taken >= rate {
		return false
	}
	d.taken++
	return true
}

// Spend records that the allowance was spent at at, and reports whether
// that is news: the probes are to come out. A backend calls it with every
// hit its limit refuses.
func (d *Disarm) Spend(at time.Time) bool {
	if !d.spentAt.IsZero() {
		return false
	}
	d.spentAt = at
	return true
}

// Out records that the probes came out at now, and returns when to put
// them back.
func (d *Disarm) Out(now time.Time) time.Time {
	if d.window == 0 {
		d.Armed(now)
	}
	if d.spentAt.IsZero() || d.spentAt.After(now) {
		d.spentAt = now
	}
	d.outAt = now
	start := d.armedAt
	if !d.firstAt.IsZero() {
		start = d.firstAt
	}
	at := start.Add(d.window)
	if at.Before(now) {
		at = now
	}
	return at
}

// IsOut reports whether the probes are out.
func (d *Disarm) IsOut() bool { return !d.outAt.IsZero() }

// Rearm is called as the probes begin to go back in at now, with seen the
// hits the limit saw (taken or refused) while they were in, and wasted
// those it refused after Spend. It returns the estimate of the hits that
// ran while they were out, from the rate seen while they were in, and
// adjusts the window. A backend whose probes take time to go in calls In
// once they are.
func (d *Disarm) Rearm(now time.Time, seen, wasted uint64) (uncounted uint64) {
	if d.outAt.IsZero() {
		d.Armed(now)
		return 0
	}
	// An arming shorter than a microsecond is below what the clocks tell
	// apart: count it as one.
	d.rate = float64(seen) / max(d.outAt.Sub(d.armedAt), time.Microsecond).Seconds()
	uncounted = uint64(d.rate * now.Sub(d.outAt).Seconds())
	perSecond := float64(wasted) / d.window.Seconds()
	switch {
	case perSecond > wasteLimit && d.window < maxBackoff*d.base:
		d.window *= 2
	case perSecond < wasteLimit/4 && d.window > d.base:
		d.window /= 2
	}
	d.Armed(now)
	return uncounted
}

// In records that the probes that Rearm began to put back were in at at,
// and returns the estimate of the hits that ran from Rearm until then. A
// kernel slow to attach a uprobe (hundreds of milliseconds on a loaded
// host) would otherwise leave those hits out of every count, and start the
// window before the probes were in: the window went by with them in for
// less than its length, the rate limit's allowance not yet refilled for
// the next, and the rate of the next estimate taken over time the probes
// could see nothing (a stressed run estimated 34 hits for 420 ms of a line
// that ran 2,000 times a second).
func (d *Disarm) In(at time.Time) (uncounted uint64) {
	if !d.outAt.IsZero() || !at.After(d.armedAt) {
		return 0 // taken out again meanwhile, or in already
	}
	uncounted = uint64(d.rate * at.Sub(d.armedAt).Seconds())
	d.armedAt = at
	return uncounted
}

// BackedOff says, when the window is longer than a second, how often the
// probes are put back and why; "" otherwise.
func (d *Disarm) BackedOff(rate int) string {
	if d.window <= d.base {
		return ""
	}
	return fmt.Sprintf("backed off: the probe is put back every %v, so at most %d hits leave per %v (the line runs so hot that re-arming it each second cost more than %d traps a second)", d.window, rate, d.window, wasteLimit)
}
