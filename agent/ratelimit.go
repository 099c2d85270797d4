package agent

import (
	"fmt"
	"os"
	"slices"
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
// from the rate the line ran at while they were in, over the time it ran
// free of them: the arming less the time the probes held the line's
// threads (Held: Delve's stops, measured; for eBPF, a bound from the hits
// the arming saw, HitCost each, from the cost of a trap measured on the
// host).
// The counted drops are then a lower bound, the estimate added to them a
// guess. Where the probes held the line for more than half of the arming,
// the rate the line ran at was the probes' more than its own, and no rate
// taken with them in tells what it does with them out: make bench-limits
// measured a line that ran 190,000 times a second at 40,000 a second with
// eBPF's probe in, 4,000 with Delve's uprobe (a stop of the thread at each
// capture) and 500 with Delve's breakpoint (a stop of the process), the
// estimates taken from those rates 10, 60 and 350 times too low. There
// the estimate is unavailable (Rearm and In say so) and the status says
// the drops are a lower bound only; so it is where the process, or the
// threads that ran the line, had less than half the CPU with the probes
// in that they had with them out (see starved; the eBPF backend reads
// both, where no probe stops the process).
// Elsewhere the arming's rate is off by at most the held share it leaves
// out or counts in (half at most): for a line that runs steadily, the
// estimate is within 2× of the truth. A burst
// that ended while the probes were out would make it high: the line's
// first hit once they are back in must come within lateHits hits' time at
// the rate (or lateFloor), or the estimate is withdrawn, and the hits say
// there is none (Vouch). TestRateLimit's burst, followed by one call a
// second, had 15,328 estimated for 1,499 missed before.
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
	// Held, if set, returns the time the probes have held the line's
	// threads in all (Delve: the time its stops held the process); nil:
	// Disarm bounds it from the hits seen, HitCost each. heldIn
	// and heldOut are what it said when the probes went in and came out.
	Held            func() time.Duration
	heldIn, heldOut time.Duration
	// HitCost bounds what a hit with the probes in costs the thread that
	// ran it, captured or not, where Held does not measure it (eBPF: see
	// its hitCost); zero where the backend could not tell, and then there
	// is no estimate. Under the true cost, it lets a rate that is mostly
	// the probes' pass for the line's own, and the estimate is too low by
	// as much as the line runs faster with them out.
	HitCost time.Duration
	// CPU, if set, returns the CPU time the traced process has had so
	// far, and cpuIn and cpuOut what it said when the probes went in and
	// came out: an arming in which the process had much less of a CPU
	// than it had since is refused an estimate (see starved).
	CPU           func() time.Duration
	cpuIn, cpuOut time.Duration
	readInAt      time.Time // when cpuIn and watch's in were read (Armed): In leaves them
	// Sched, if set, returns what the scheduler says of a thread of the
	// traced process: the time it has run and the time it has waited,
	// runnable, for a CPU; ok is false once it is gone. The threads that
	// ran the line (Ran) are watched in the next arming, and one in
	// which they had much less of the CPU they wanted than they had
	// since is refused an estimate (see starved).
	Sched func(tid int) (run, wait time.Duration, ok bool)
	ran   []int     // the threads of the hits since the last Armed, at most maxWatched
	watch []watched // the threads watched in this arming
	// NoEstimate says the backend cannot tell how long its probes held
	// the line (Delve's int3 mode: see armingRate): there is never an
	// estimate.
	NoEstimate bool
	// rate is the hits a second the last Rearm estimated from, for In;
	// blind says it had none (see Disarm).
	rate  float64
	blind bool
	// rearms counts the put-backs. The first's estimate waits in pending,
	// its rate in firstRate, for the second to confirm (see Rearm).
	rearms    int
	pending   uint64
	firstRate float64
	// vouch says that an estimate was taken (Rearm) that the line's first
	// hit since the probes went in is to bear out (Vouch).
	vouch bool
}

// watched is a thread Disarm watches in an arming: what the scheduler said
// of it as the probes went in and as they came out (outOK: it was there).
type watched struct {
	tid     int
	in, out schedTimes
	outOK   bool
}

// schedTimes is what the scheduler says of a thread, or of threads
// together: the time run, and the time waited, runnable, for a CPU.
type schedTimes struct{ run, wait time.Duration }

// add returns t with what passed from u to v added.
func (t schedTimes) add(u, v schedTimes) schedTimes {
	return schedTimes{t.run + v.run - u.run, t.wait + v.wait - u.wait}
}

// wanted is the time run or runnable.
func (t schedTimes) wanted() time.Duration { return t.run + t.wait }

// share is the part of the CPU time wanted that was had; 1 where none was
// wanted.
func (t schedTimes) share() float64 {
	if t.wanted() <= 0 {
		return 1
	}
	return float64(t.run) / float64(t.wanted())
}

// maxWatched bounds the threads an arming watches: a hot line runs on the
// few threads its goroutines are on.
const maxWatched = 8

const (
	// Window is how often a tracepoint's probes are put back, unless it
	// backed off.
	Window = time.Second
	// maxBackoff bounds the backoff: the window grows to at most this
	// many times its base.
	maxBackoff = 32
	// wasteLimit is the counted drops a second (traps for nothing) past
	// which the window doubles: at the 23–33 µs a uprobe trap costs a
	// thread on a small VM, 5–7% of a CPU.
	wasteLimit = 2000
	// wasteSlack is the hits refused after the allowance was spent that
	// may come, beyond twice what the rate says, by chance (or, with
	// Delve's uprobes, while the kernel removes them) before they mean
	// the line ran faster with its hits bare (see armingRate).
	wasteSlack = 5
	// lateHits is how many hits' time, at the rate an estimate was taken
	// from, the line's first hit with the probes back in may take before
	// it says the line no longer ran at that rate (see Vouch): a line hit
	// at random instants leaves that long a gap once in 500 million
	// times.
	lateHits = 20
	// lateFloor is the least gap Vouch allows: a target's thread on a
	// loaded host waits for a CPU for milliseconds (a run of TestDisarm at
	// load 21 saw its first hit 20 ms after the probes went in).
	lateFloor = 50 * time.Millisecond
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
	if d.Held != nil {
		d.heldIn = d.Held()
	}
	d.readInAt = now
	if d.CPU != nil {
		d.cpuIn = d.CPU()
	}
	d.watch = d.watch[:0]
	if d.Sched != nil {
		for _, tid := range d.ran {
			if run, wait, ok := d.Sched(tid); ok {
				d.watch = append(d.watch, watched{tid: tid, in: schedTimes{run, wait}})
			}
		}
	}
	d.ran = d.ran[:0]
}

// Ran records that thread tid ran the line (a hit's thread): the next
// arming watches it (see starved).
func (d *Disarm) Ran(tid int) {
	if d.Sched == nil || len(d.ran) >= maxWatched || slices.Contains(d.ran, tid) {
		return
	}
	d.ran = append(d.ran, tid)
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
	if d.Held != nil {
		d.heldOut = d.Held()
	}
	if d.CPU != nil {
		d.cpuOut = d.CPU()
	}
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

// ThreadsOut reads the watched threads as the probes came out. A backend
// calls it after Out, once they are out: reading a thread takes tens of
// µs, which would keep the probes in and count their traps as wasted.
// A thread not read then is left out of the comparison (see starved).
func (d *Disarm) ThreadsOut() {
	for i := range d.watch {
		w := &d.watch[i]
		run, wait, ok := d.Sched(w.tid)
		w.out, w.outOK = schedTimes{run, wait}, ok
	}
}

// IsOut reports whether the probes are out.
func (d *Disarm) IsOut() bool { return !d.outAt.IsZero() }

// Rearm is called as the probes begin to go back in at now, with seen the
// hits the limit saw (taken or refused) while they were in, and wasted
// those it refused after Spend. It returns the estimate of the hits that
// ran while they were out, from the rate seen while they were in, and
// adjusts the window; ok is false where no estimate can be had (see
// Disarm): the hits that ran while they were out are then unknown. A
// backend whose probes take time to go in calls In once they are.
//
// The first arming's estimate waits for the second's rate, and goes out
// with the second's estimate where the two rates are within 2x of each
// other; otherwise there is none for it. The probes had just gone in for
// the first time: two runs of TestDisarm at load 12–14 saw its 52 hits
// take 25 and 46 ms (the target starved while the agent warmed up to
// decode them) on a line run 23 million times a second with the probes
// out, and 50 take 1–2 ms in the next armings.
func (d *Disarm) Rearm(now time.Time, seen, wasted uint64) (uncounted uint64, ok bool) {
	if d.outAt.IsZero() {
		d.Armed(now)
		return 0, true
	}
	// The last estimate, if no hit has borne it out yet (see Vouch), is
	// decided now: borne out or not by the arming's first hit, and with
	// none in all of the arming, not (the line did not run then, and may
	// have stopped at any time while the probes were out before).
	withdrawn := d.vouch && (d.firstAt.IsZero() || d.late())
	if withdrawn {
		d.pending, d.firstRate = 0, 0
	}
	d.rate, ok = d.armingRate(seen, wasted)
	if ok && d.starved(now) {
		d.rate, ok = 0, false
	}
	d.blind = !ok
	d.vouch = ok && d.rate > 0
	if ok {
		uncounted = uint64(d.rate * now.Sub(d.outAt).Seconds())
	}
	d.rearms++
	switch {
	case d.rearms == 1 && ok:
		d.pending, d.firstRate = uncounted, d.rate
		uncounted = 0
	case d.rearms == 2 && d.firstRate > 0:
		if ok && d.firstRate <= 2*d.rate && d.rate <= 2*d.firstRate {
			uncounted += d.pending
		} else {
			ok = false
		}
		d.pending, d.firstRate = 0, 0
	}
	perSecond := float64(wasted) / d.window.Seconds()
	switch {
	case perSecond > wasteLimit && d.window < maxBackoff*d.base:
		d.window *= 2
	case perSecond < wasteLimit/4 && d.window > d.base:
		d.window /= 2
	}
	d.Armed(now)
	return uncounted, ok && !withdrawn
}

// armingRate is the rate the line ran at, free of the probes, in the
// arming that ended at outAt, with seen hits of which the limit refused
// wasted after Spend; ok is false where the probes held it for more than
// half of the arming.
func (d *Disarm) armingRate(seen, wasted uint64) (rate float64, ok bool) {
	if d.NoEstimate {
		// Each hit of Delve's int3 breakpoints stops the whole process,
		// and what the stop budget measures of a stop leaves out the
		// trap's way to the worker and the threads' back to running: a
		// run of TestDisarmInt3 at load 15 saw 50 hits take 259 ms, the
		// stops measured at less than half of it, on a line run 94
		// million times a second with the breakpoint out (make
		// bench-limits: estimates 0.004 of the truth).
		return 0, false
	}
	// From the first hit, the hits after it: a line that the host starved
	// for a while after the probes went in did not run then, probes or
	// not (a run of TestDisarm at load 21 saw its first hit 20 ms late,
	// and 50 more in the next millisecond), and a line hit at random
	// instants waits as long for its first hit as between two. An arming
	// shorter than a microsecond is below what the clocks tell apart:
	// count it as one.
	from, n := d.armedAt, seen
	if seen >= 2 && d.firstAt.After(d.armedAt) {
		from, n = d.firstAt, seen-1
	}
	arming := max(d.outAt.Sub(from), time.Microsecond)
	var held time.Duration
	switch {
	case d.Held != nil:
		held = d.heldOut - d.heldIn
	case d.HitCost > 0:
		held = time.Duration(seen) * d.HitCost
	default:
		return 0, false
	}
	if held > arming/2 {
		return 0, false
	}
	rate = float64(n) / (arming - max(held, 0)).Seconds()
	// The hits refused after the allowance was spent cost a trap each and
	// no capture: a line that ran much faster then than the rate says was
	// held by the captures, whatever held said (a run of TestDisarm at
	// load 18 saw 51 captures over 25 ms, bounded at 1.3 ms held, then 28
	// traps within the millisecond the probes took to come out, of a line
	// that runs 300 million times a second with them out).
	if float64(wasted) > 2*rate*d.outAt.Sub(d.spentAt).Seconds()+wasteSlack {
		return 0, false
	}
	return rate, true
}

// starved reports whether the process had less than half as much CPU a
// second while the probes were in as it has had since they came out, at
// now, or the threads watched (those that ran the line in the arming
// before) had less than half the share of the CPU they wanted that they
// have had since. Its line then ran less with them in for want of a CPU,
// not for the probes, or the process did less of its work then; either
// way the rate of the arming is not the line's with them out. A traced
// thread waits for a CPU more with the probes in: each capture wakes the
// agent's reader, which may take the CPU from it. Two runs of agent/ebpf's
// TestDisarm side by side on two CPUs, 2 of 40 armings, had the process at
// 0.25 and 0.32 of a CPU for 13 and 10 ms with the probes in, and at 0.97
// after: 51 hits of a line that runs 300 million times a second with the
// probes out, at HitCost 64 µs a hit, passed for 5,706 a second.
//
// The process's CPU alone misses a starved thread among busy ones: the
// line's threads are watched for that. Their share of what they wanted
// (run and runnable) is compared, not their CPU a second: a thread
// that sleeps between calls wants little, and a goroutine that moved to
// another thread leaves its old one idle. Threads that wanted under a
// tenth of the arming, or of the time since, tell nothing, and a host
// busy alike throughout starves the line alike with the probes in and out.
func (d *Disarm) starved(now time.Time) bool {
	if !now.After(d.outAt) || !d.outAt.After(d.readInAt) {
		return false
	}
	if d.CPU != nil {
		in := float64(d.cpuOut-d.cpuIn) / float64(d.outAt.Sub(d.readInAt))
		out := float64(d.CPU()-d.cpuOut) / float64(now.Sub(d.outAt))
		if in < out/2 {
			return true
		}
	}
	var in, out schedTimes
	for _, w := range d.watch {
		if !w.outOK {
			continue
		}
		if run, wait, ok := d.Sched(w.tid); ok {
			in = in.add(w.in, w.out)
			out = out.add(w.out, schedTimes{run, wait})
		}
	}
	return in.wanted() >= d.outAt.Sub(d.readInAt)/10 && out.wanted() >= now.Sub(d.outAt)/10 &&
		in.share() < out.share()/2
}

// In records that the probes that Rearm began to put back were in at at,
// and returns the estimate of the hits that ran from Rearm until then. A
// kernel slow to attach a uprobe (hundreds of milliseconds on a loaded
// host) would otherwise leave those hits out of every count, and start the
// window before the probes were in: the window went by with them in for
// less than its length, the rate limit's allowance not yet refilled for
// the next, and the rate of the next estimate taken over time the probes
// could see nothing (a stressed run estimated 34 hits for 420 ms of a line
// that ran 2,000 times a second). ok is false where Rearm's was.
func (d *Disarm) In(at time.Time) (uncounted uint64, ok bool) {
	if !d.outAt.IsZero() || !at.After(d.armedAt) {
		return 0, true // taken out again meanwhile, or in already
	}
	if !d.blind {
		uncounted = uint64(d.rate * at.Sub(d.armedAt).Seconds())
	}
	d.armedAt = at // the CPU read as Rearm began stays: the attach's time is the process's own
	if d.rearms == 1 && d.firstRate > 0 {
		d.pending += uncounted // with the first arming's (see Rearm)
		return 0, true
	}
	return uncounted, !d.blind
}

// Vouch checks *u, the uncounted drops a backend owes the line's next hit,
// against the line's first hit since the probes went back in (see Hit): one
// that came more than lateHits hits' time after them, at the rate the
// estimate was taken from (or lateFloor), says the line slowed or stopped
// while they were out, as a burst that ended does. *u then says there is
// no estimate, and the first arming's, if it waits, is dropped. ready is
// false while no hit has come since the probes went in (the hit at hand
// was taken before, and read late): that hit is to carry nothing of u and
// say that an estimate waits.
func (d *Disarm) Vouch(u *Uncounted) (ready bool) {
	if !d.vouch {
		return true
	}
	if d.firstAt.IsZero() {
		return false
	}
	d.vouch = false
	if d.late() {
		*u = Uncounted{Unknown: true}
		d.pending, d.firstRate = 0, 0
	}
	return true
}

// late reports whether the arming's first hit came later than the rate of
// the last estimate allows (see Vouch).
func (d *Disarm) late() bool {
	return d.firstAt.Sub(d.armedAt) > d.allowed()
}

// allowed is how long after the probes went in the arming's first hit may
// come at the rate of the last estimate (see Vouch): lateHits hits' time,
// and lateFloor at least.
func (d *Disarm) allowed() time.Duration {
	if d.rate <= 0 {
		return lateFloor
	}
	return max(time.Duration(lateHits/d.rate*float64(time.Second)), lateFloor)
}

// QuietAt is when a line that has had no hit since the probes went back
// in is quiet (see Quiet).
func (d *Disarm) QuietAt() time.Time { return d.armedAt.Add(d.allowed()) }

// Quiet reports, at now, whether the probes are in and the line has had
// no hit since they went in for longer than Vouch allows its first: the
// line slowed or stopped while they were out, as a burst that ended does,
// and a hit may not come for long. What the backend owes the next hit
// (the drops counted before the probes came out, *u) is then to go in a
// notice now (Hit.DropsOnly): with the last estimate withdrawn, as Vouch
// would withdraw it, and no estimate waiting for the next arming. Nothing
// before said more than a lower bound until the line ran again.
//
// A backend asks once its hits until now are decoded. One decoded later
// whose capture came in time was not late, but its estimate is gone: the
// hits run with the probes out are then unknown, not misstated. Not yet
// (false) is asked again at QuietAt; a hit since, or the probes out, end
// the asking.
func (d *Disarm) Quiet(now time.Time, u *Uncounted) bool {
	if d.IsOut() || !d.firstAt.IsZero() || now.Before(d.QuietAt()) {
		return false
	}
	if d.vouch {
		d.vouch = false
		*u = Uncounted{Unknown: true}
	}
	d.pending, d.firstRate = 0, 0
	return true
}

// Asking reports whether Quiet may still say the line is quiet: the
// probes are in and no hit has come since.
func (d *Disarm) Asking() bool { return !d.IsOut() && d.firstAt.IsZero() }

// Waiting reports whether an estimate waits for the next arming to
// confirm it (see Rearm): until then, the counted drops are a lower bound
// with no estimate.
func (d *Disarm) Waiting() bool { return d.rearms == 1 && d.firstRate > 0 }

// BackedOff says, when the window is longer than a second, how often the
// probes are put back and why; "" otherwise.
func (d *Disarm) BackedOff(rate int) string {
	if d.window <= d.base {
		return ""
	}
	return fmt.Sprintf("backed off: the probe is put back every %v, so at most %d hits leave per %v (the line runs so hot that re-arming it each second cost more than %d traps a second)", d.window, rate, d.window, wasteLimit)
}

// Uncounted sums what a Disarm's Rearm and In return, for the next hit to
// carry (Hit.Uncounted).
type Uncounted struct {
	N       uint64 `json:"n,omitempty"`       // the hits estimated to have run with the probes out
	Unknown bool   `json:"unknown,omitempty"` // the probes were out for a while with no estimate
}

// Any says whether there is anything to tell: an estimate, or its absence.
func (u Uncounted) Any() bool { return u.N > 0 || u.Unknown }

// Add adds an estimate of n hits, or says there was none (ok false).
func (u *Uncounted) Add(n uint64, ok bool) {
	u.N += n
	u.Unknown = u.Unknown || !ok
}
