package agent

import (
	"strings"
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	var b TokenBucket
	b.Init(10)
	now := time.Unix(1000, 0)
	n := 0
	for range 100 {
		if b.Take(now) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("burst allowed %d, want 10", n)
	}
	if !b.Take(now.Add(100 * time.Millisecond)) {
		t.Fatal("no token after a tenth of a second at 10/s")
	}
	var off TokenBucket
	off.Init(0)
	for range 1000 {
		if !off.Take(now) {
			t.Fatal("a zero rate must not limit")
		}
	}
}

// TestDisarm: the estimate of the hits run while the probes were out is
// the rate seen while they were in, over the time out, until they are in
// again, and the window starts at the first hit after that; a line whose wasted
// traps pass the limit backs off a doubling at a time, says so, and comes
// back once the waste falls.
func TestDisarm(t *testing.T) {
	d := Disarm{HitCost: hitCost}
	t0 := time.Unix(1000, 0)
	d.Armed(t0)
	if d.BackedOff(50) != "" || d.IsOut() {
		t.Fatal("a new Disarm is out or backed off")
	}
	// 60 hits in the first 10 ms, the last 10 refused.
	if !d.Spend(t0.Add(8*time.Millisecond)) || d.Spend(t0.Add(9*time.Millisecond)) {
		t.Fatal("Spend must say yes once an arming")
	}
	back := d.Out(t0.Add(10 * time.Millisecond))
	if !back.Equal(t0.Add(time.Second)) || !d.IsOut() {
		t.Fatalf("put back at %v, want a second after the arming", back.Sub(t0))
	}
	// 60 hits in 10 ms, which held the line 1.5 ms at most (HitCost): 60
	// hits in 8.5 ms of the line's own, 7059 a second, out for 990 ms:
	// 6988, which waits for the next arming to confirm its rate.
	if got, ok := d.Rearm(back, 60, 10); got != 0 || !ok {
		t.Fatalf("estimate %d (%v) of the first arming, want 0 (it waits)", got, ok)
	}
	if d.pending != 6988 {
		t.Fatalf("estimate %d waiting, want 6988", d.pending)
	}
	if d.IsOut() || d.BackedOff(50) != "" {
		t.Fatal("not armed again, or backed off for 10 wasted traps")
	}
	// The probes took 300 ms to go in: the estimate goes on at 6000 a
	// second until then, and the window starts there.
	if got, ok := d.In(back.Add(300 * time.Millisecond)); got != 0 || !ok || d.pending != 6988+2117 {
		t.Fatalf("estimate %d (%v) of the hits run while the probes went in, %d waiting; want 2117 waiting", got, ok, d.pending)
	}
	d.Spend(back.Add(310 * time.Millisecond))
	if next := d.Out(back.Add(320 * time.Millisecond)); !next.Equal(back.Add(1300 * time.Millisecond)) {
		t.Fatalf("put back %v after the probes went in, want a second", next.Sub(back.Add(300*time.Millisecond)))
	}
	if got, _ := d.In(back.Add(400 * time.Millisecond)); got != 0 {
		t.Fatalf("In with the probes out again estimated %d", got)
	}
	back = back.Add(1300 * time.Millisecond)
	// 60 hits in 20 ms less 1.5 ms held, 3243 a second: under half the
	// first arming's rate, which had no estimate then.
	if got, ok := d.Rearm(back, 60, 10); ok {
		t.Fatalf("estimate %d of a second arming at under half the first's rate: want none", got)
	}
	// The line did not run for 600 ms after the probes went in: the
	// window starts at its first hit.
	d.Hit(back.Add(600 * time.Millisecond))
	d.Hit(back.Add(601 * time.Millisecond))
	d.Spend(back.Add(610 * time.Millisecond))
	if next := d.Out(back.Add(620 * time.Millisecond)); !next.Equal(back.Add(1600 * time.Millisecond)) {
		t.Fatalf("put back %v after the first hit, want a second", next.Sub(back.Add(600*time.Millisecond)))
	}
	back = back.Add(1600 * time.Millisecond)
	d.Rearm(back, 60, 10)
	// Wasting more than the limit each window doubles it, up to 32 s.
	now := back
	for range 10 {
		d.Spend(now)
		now = d.Out(now.Add(time.Millisecond))
		d.Rearm(now, 10000, 3*wasteLimit*uint64(d.window/time.Second))
	}
	if d.window != maxBackoff*Window || !strings.Contains(d.BackedOff(50), "every 32s") {
		t.Fatalf("window %v after ten wasteful windows: %q", d.window, d.BackedOff(50))
	}
	for range 10 {
		d.Spend(now)
		now = d.Out(now.Add(time.Millisecond))
		d.Rearm(now, 51, 1)
	}
	if d.window != Window || d.BackedOff(50) != "" {
		t.Fatalf("window %v after ten windows that wasted nothing", d.window)
	}
}

// TestDisarmHeld: the estimate's rate leaves out the time the probes held
// the line, measured (Held) or bounded from the hits; where they held it
// for more than half of the arming there is none, for the window and for
// the put-back's attach after it, and the next arming can have one again.
func TestDisarmHeld(t *testing.T) {
	var held time.Duration
	d := Disarm{Held: func() time.Duration { return held }}
	t0 := time.Unix(1000, 0)
	d.Armed(t0)
	held = 2 * time.Millisecond // stopped before the probes went in: not this arming's
	d.Armed(t0)
	// 51 hits in 20 ms, the 50 captures holding the line 8 ms in all: 51
	// in 12 ms of its own, 4250 a second, out for 980 ms: 4165.
	held += 8 * time.Millisecond
	d.Spend(t0.Add(20 * time.Millisecond))
	back := d.Out(t0.Add(20 * time.Millisecond))
	held += 5 * time.Millisecond // another tracepoint's stops, with these out
	if got, ok := d.Rearm(back, 51, 1); got != 0 || !ok || d.pending != 4165 {
		t.Fatalf("estimate %d (%v), %d waiting; want 4165 waiting", got, ok, d.pending)
	}
	if got, ok := d.In(back.Add(100 * time.Millisecond)); got != 0 || !ok || d.pending != 4165+425 {
		t.Fatalf("estimate %d (%v) of the attach, %d waiting; want 425 more waiting", got, ok, d.pending)
	}
	// The next arming: 51 hits in 20 ms of which the stops held 15: the
	// line ran at what the stops let it, no estimate.
	t1 := back.Add(100 * time.Millisecond)
	held += 15 * time.Millisecond
	d.Spend(t1.Add(20 * time.Millisecond))
	back = d.Out(t1.Add(20 * time.Millisecond))
	if got, ok := d.Rearm(back, 51, 0); got != 0 || ok {
		t.Fatalf("estimate %d (%v) of an arming held 75%% of its time, want none", got, ok)
	}
	if got, ok := d.In(back.Add(50 * time.Millisecond)); got != 0 || ok {
		t.Fatalf("estimate %d (%v) of the attach after it, want none", got, ok)
	}
	// Held exactly half: the bound holds, an estimate within 2x.
	t2 := back.Add(50 * time.Millisecond)
	held += 10 * time.Millisecond
	d.Spend(t2.Add(20 * time.Millisecond))
	back = d.Out(t2.Add(20 * time.Millisecond))
	if got, ok := d.Rearm(back, 50, 0); got != 4900 || !ok {
		t.Fatalf("estimate %d (%v), want 4900 (5000 a second for 980 ms)", got, ok)
	}

	// Without Held (eBPF), the bound from the hits: the bench's hot line,
	// 50 captures and 40 traps in 2 ms (2.25 ms held at most), has none;
	// a cool line's 50 captures over 200 ms have one.
	e := Disarm{HitCost: hitCost}
	e.Armed(t0)
	e.Spend(t0.Add(2 * time.Millisecond))
	back = e.Out(t0.Add(2 * time.Millisecond))
	if got, ok := e.Rearm(back, 90, 40); ok {
		t.Fatalf("estimate %d of a line the traps held most of the arming", got)
	}
	e.Spend(back.Add(200 * time.Millisecond))
	next := e.Out(back.Add(200 * time.Millisecond))
	// 51 hits in 200 ms less 1.275 ms: 256.6 a second, for 800 ms: 205.
	if got, ok := e.Rearm(next, 51, 1); got != 205 || !ok {
		t.Fatalf("estimate %d (%v), want 205", got, ok)
	}
	// 51 captures over 25 ms, then 28 traps in the millisecond the
	// probes took to come out: the captures held the line, whatever the
	// bound says.
	t3 := next
	e.Rearm(t3, 0, 0)
	e.Spend(t3.Add(25 * time.Millisecond))
	next = e.Out(t3.Add(26 * time.Millisecond))
	if got, ok := e.Rearm(next, 79, 28); ok {
		t.Fatalf("estimate %d of a line that ran 28 times in the 1 ms after 51 in 25", got)
	}
}

// TestDisarmFirstHit: the rate is taken from the first hit of the arming
// on, over the hits after it: a line starved for a while after the probes
// went in ran none then.
func TestDisarmFirstHit(t *testing.T) {
	d := Disarm{HitCost: hitCost}
	t0 := time.Unix(1000, 0)
	d.Armed(t0)
	d.Hit(t0.Add(20 * time.Millisecond))
	d.Spend(t0.Add(30 * time.Millisecond))
	back := d.Out(t0.Add(30 * time.Millisecond))
	// 11 hits over 10 ms from the first, 10 after it, none refused after
	// the spend (11 held 25 µs each at most): 10 in 9.725 ms of the
	// line's own, for 980 ms out: 1007.
	t1 := back.Add(-10 * time.Millisecond)
	if got, ok := d.Rearm(t1, 11, 0); got != 0 || !ok || d.pending != 1007 {
		t.Fatalf("estimate %d (%v), %d waiting; want 1007 waiting", got, ok, d.pending)
	}
	// The next arming the same: it confirms the first's rate, and both
	// estimates go out.
	d.Hit(t1.Add(20 * time.Millisecond))
	d.Spend(t1.Add(30 * time.Millisecond))
	back = d.Out(t1.Add(30 * time.Millisecond))
	if got, ok := d.Rearm(back.Add(-10*time.Millisecond), 11, 0); got != 2014 || !ok {
		t.Fatalf("estimate %d (%v), want 2014", got, ok)
	}
}

// TestDisarmVouch: an estimate goes out once the line's first hit with the
// probes back in bears out its rate; a first hit that comes late says the
// line slowed while they were out (a burst that ended), and there is then
// no estimate, the first arming's waiting one dropped too.
func TestDisarmVouch(t *testing.T) {
	// armed spends an arming of 51 hits over 10 ms (5,000 a second) and
	// puts the probes back at back, returning what Rearm estimated.
	arm := func(d *Disarm, t0 time.Time) (back time.Time, u Uncounted) {
		d.Hit(t0)
		d.Spend(t0.Add(10 * time.Millisecond))
		back = d.Out(t0.Add(10 * time.Millisecond))
		u.Add(d.Rearm(back, 51, 0))
		return back, u
	}
	t0 := time.Unix(1000, 0)
	d := Disarm{HitCost: hitCost}
	d.Armed(t0)
	back, u := arm(&d, t0)
	if !d.Waiting() {
		t.Fatal("the first arming's estimate does not wait for the second")
	}
	// A hit read late, from before the probes went in, vouches for
	// nothing yet.
	d.Hit(back.Add(-time.Millisecond))
	if d.Vouch(&u) {
		t.Fatal("ready with no hit since the probes went in")
	}
	// The line ran on: its first hit 1 ms after (20 hits' time is 4 ms,
	// the floor 50 ms).
	d.Hit(back.Add(time.Millisecond))
	if !d.Vouch(&u) || u.Unknown || !d.Waiting() {
		t.Fatalf("%+v (waiting %v) for a line that ran on, want the estimate kept", u, d.Waiting())
	}
	back, u = arm(&d, back.Add(time.Millisecond))
	if u.Unknown || u.N == 0 {
		t.Fatalf("%+v, want the two armings' estimate", u)
	}
	// The burst ended while the probes were out: the next hit a second
	// after they went back in.
	d.Hit(back.Add(time.Second))
	if !d.Vouch(&u) || u != (Uncounted{Unknown: true}) {
		t.Fatalf("%+v for a line that ran its next hit a second after the probes went in, want no estimate", u)
	}
	// Checked once: a later hit of the arming changes nothing.
	u = Uncounted{N: 7}
	if !d.Vouch(&u) || u.N != 7 {
		t.Fatalf("%+v, want it left alone", u)
	}

	// No hit in all of an arming: the estimate it was to bear out is
	// withdrawn when the probes go back in.
	f := Disarm{HitCost: hitCost}
	f.Armed(t0)
	back, _ = arm(&f, t0)
	back, _ = arm(&f, back.Add(time.Millisecond)) // the first arming's, borne out at the spend
	f.Spend(back.Add(time.Second))
	f.Out(back.Add(time.Second))
	if _, ok := f.Rearm(back.Add(2*time.Second), 0, 0); ok {
		t.Fatal("an estimate no hit bore out in all of an arming went out")
	}

	// Late after the first arming: its waiting estimate goes too.
	e := Disarm{HitCost: hitCost}
	e.Armed(t0)
	back, u = arm(&e, t0)
	e.Hit(back.Add(time.Second))
	if !e.Vouch(&u) || !u.Unknown || e.Waiting() {
		t.Fatalf("%+v (waiting %v), want no estimate and none waiting", u, e.Waiting())
	}
}

// TestDisarmQuiet: a line with no hit since the probes went back in, for
// longer than the rate of the last estimate allows its first, is quiet:
// the estimate is withdrawn then, not when a hit that may never come
// finally does, and nothing waits for the next arming.
func TestDisarmQuiet(t *testing.T) {
	t0 := time.Unix(1000, 0)
	arm := func(d *Disarm) (back time.Time, u Uncounted) {
		d.Armed(t0)
		d.Hit(t0)
		d.Spend(t0.Add(10 * time.Millisecond))
		back = d.Out(t0.Add(10 * time.Millisecond))
		u.Add(d.Rearm(back, 51, 0)) // 5,000 a second: 20 hits' time is 4 ms, under the floor
		return back, u
	}
	d := Disarm{HitCost: hitCost}
	back, u := arm(&d)
	if !d.Waiting() || !d.Asking() {
		t.Fatalf("waiting %v, asking %v after the first put-back, want both", d.Waiting(), d.Asking())
	}
	if at := d.QuietAt(); !at.Equal(back.Add(lateFloor)) {
		t.Fatalf("quiet at %v after the put-back, want the floor, %v", at.Sub(back), lateFloor)
	}
	if d.Quiet(back.Add(lateFloor-time.Millisecond), &u) {
		t.Fatal("quiet before the floor")
	}
	if !d.Quiet(back.Add(lateFloor+time.Millisecond), &u) || u != (Uncounted{Unknown: true}) || d.Waiting() {
		t.Fatalf("%+v (waiting %v) for a line quiet since the probes went in, want it quiet, no estimate, none waiting", u, d.Waiting())
	}
	// Its next hit, much later, owes nothing more.
	d.Hit(back.Add(time.Minute))
	var next Uncounted
	if !d.Vouch(&next) || next.Any() || d.Asking() {
		t.Fatalf("the next hit: %+v (asking %v), want nothing owed and no asking", next, d.Asking())
	}

	// A hit in time, or the probes out: not quiet, and no more asking.
	h := Disarm{HitCost: hitCost}
	back, u = arm(&h)
	h.Hit(back.Add(time.Millisecond))
	if h.Quiet(back.Add(time.Second), &u) || h.Asking() || u.Unknown {
		t.Fatalf("quiet or asking (%v) with a hit in time: %+v", h.Asking(), u)
	}
	o := Disarm{HitCost: hitCost}
	back, u = arm(&o)
	o.Spend(back)
	o.Out(back)
	if o.Quiet(back.Add(time.Second), &u) || o.Asking() {
		t.Fatalf("quiet or asking (%v) with the probes out", o.Asking())
	}

	// With no estimate to withdraw (none could be had), quiet all the
	// same: what the put-back said goes now.
	n := Disarm{NoEstimate: true}
	back, u = arm(&n)
	if !u.Unknown || !n.Quiet(back.Add(lateFloor+time.Millisecond), &u) || u != (Uncounted{Unknown: true}) {
		t.Fatalf("%+v, want quiet with no estimate", u)
	}
}

// hitCost is the cost of a hit the tests' Disarms take: a bare uprobe
// trap's at low load on a small VM.
const hitCost = 25 * time.Microsecond

// TestDisarmNoEstimate: a backend that cannot tell what held the line
// never has an estimate, however slowly it ran: one that says so, and one
// with neither Held nor HitCost.
func TestDisarmNoEstimate(t *testing.T) {
	for _, d := range []*Disarm{{NoEstimate: true}, {}} {
		t0 := time.Unix(1000, 0)
		d.Armed(t0)
		d.Hit(t0)
		d.Spend(t0.Add(500 * time.Millisecond))
		back := d.Out(t0.Add(500 * time.Millisecond))
		if got, ok := d.Rearm(back, 51, 0); got != 0 || ok {
			t.Fatalf("estimate %d (%v), want none", got, ok)
		}
		if got, ok := d.In(back.Add(time.Millisecond)); got != 0 || ok {
			t.Fatalf("estimate %d (%v) of the attach, want none", got, ok)
		}
	}
}

// TestDisarmHitCost: an arming of a line that ran as fast as its traps
// let it has no estimate at a HitCost the traps cost; at a lower one, its
// rate passed for the line's. Two runs of agent/ebpf's TestDisarm side by
// side saw 50 captures take 2.6 ms, 52 µs each, on a line that ran 123
// million times while the probes were out, and at 25 µs a hit estimated
// 50,156.
func TestDisarmHitCost(t *testing.T) {
	arming := func(cost time.Duration) (uint64, bool) {
		d := Disarm{HitCost: cost}
		t0 := time.Unix(1000, 0)
		d.Armed(t0)
		d.Hit(t0)
		d.Spend(t0.Add(2600 * time.Microsecond))
		back := d.Out(t0.Add(2600 * time.Microsecond))
		return d.Rearm(back, 51, 1)
	}
	if _, ok := arming(2 * hitCost); ok {
		t.Error("an estimate at 50 µs a hit, for 51 hits in 2.6 ms")
	}
	// The first arming's estimate waits for the second's: ok, and zero.
	if _, ok := arming(hitCost); !ok {
		t.Error("no estimate at 25 µs a hit: the bound no longer decides it")
	}
}

// TestUncounted: the sum a hit carries says when any part had no estimate.
func TestUncounted(t *testing.T) {
	var u Uncounted
	u.Add(10, true)
	u.Add(0, false)
	u.Add(5, true)
	if u.N != 15 || !u.Unknown {
		t.Fatalf("%+v, want 15 and unknown", u)
	}
}

// TestDisarmTake: a window lets rate hits through and gives none back
// while it lasts, however slowly they come; the probes go back a window
// after its first hit; a window that passes unspent ends, and the next hit
// begins one with a whole allowance.
func TestDisarmTake(t *testing.T) {
	d := Disarm{HitCost: hitCost}
	t0 := time.Unix(1000, 0)
	d.Armed(t0)
	first := t0.Add(200 * time.Millisecond) // the line starts late
	n := 0
	now := first
	for ; d.Take(now, 50); now = now.Add(15 * time.Millisecond) {
		n++
	}
	if n != 50 {
		t.Fatalf("%d hits let through in a window at 50, a hit every 15 ms", n)
	}
	d.Spend(now)
	if back := d.Out(now); !back.Equal(first.Add(time.Second)) {
		t.Fatalf("put back %v after the first hit, want a second", back.Sub(first))
	}
	d.Rearm(first.Add(time.Second), 51, 0)
	// 30 hits in a window, then 50 more in the next.
	now = first.Add(time.Second)
	for k := range 30 {
		if !d.Take(now.Add(time.Duration(k)*30*time.Millisecond), 50) {
			t.Fatalf("hit %d refused in a window at 50", k)
		}
	}
	now = now.Add(time.Second)
	for k := range 50 {
		if !d.Take(now.Add(time.Duration(k)*time.Millisecond), 50) {
			t.Fatalf("hit %d of a new window refused after one left unspent", k)
		}
	}
	if d.Take(now.Add(50*time.Millisecond), 50) {
		t.Fatal("a 51st hit let through in a window at 50")
	}
	if !d.Take(now, 0) {
		t.Fatal("a zero rate must not limit")
	}
}

// TestDisarmStarved: an arming in which the process had a quarter of a CPU,
// against nearly all of one since the probes came out, has no estimate:
// its line ran less then for want of a CPU. The same arming with the
// process at the CPU all along has one.
func TestDisarmStarved(t *testing.T) {
	arming := func(cpuIn time.Duration) (uint64, bool) {
		var cpu time.Duration
		d := Disarm{HitCost: time.Microsecond, CPU: func() time.Duration { return cpu }}
		t0 := time.Unix(1000, 0)
		d.Armed(t0)
		d.Hit(t0)
		cpu += cpuIn
		d.Spend(t0.Add(12 * time.Millisecond))
		back := d.Out(t0.Add(12 * time.Millisecond))
		cpu += 970 * time.Millisecond
		d.Rearm(back, 51, 1)
		// The second arming confirms the first's rate.
		d.Hit(back)
		cpu += cpuIn
		d.Spend(back.Add(12 * time.Millisecond))
		back = d.Out(back.Add(12 * time.Millisecond))
		cpu += 970 * time.Millisecond
		return d.Rearm(back, 51, 1)
	}
	if n, ok := arming(3 * time.Millisecond); ok {
		t.Errorf("estimate %d of armings with the process at 0.25 of a CPU, 0.97 after", n)
	}
	if n, ok := arming(11 * time.Millisecond); !ok || n == 0 {
		t.Errorf("estimate %d (%v) of armings with the process at the CPU throughout, want one", n, ok)
	}

	// A slow attach: the probes were in 10 ms after Rearm began them (the
	// first hit says so), the attach returned 300 ms after, and In was
	// called then; the arming counts from the 10 ms. The process at a full
	// CPU throughout is not starved.
	t0 := time.Unix(1000, 0)
	now := t0
	d := Disarm{HitCost: time.Microsecond, CPU: func() time.Duration { return now.Sub(t0) }}
	d.Armed(now)
	for range 2 { // the first arming's estimate, confirmed by the second
		d.Hit(now)
		now = now.Add(290 * time.Millisecond)
		d.Spend(now)
		now = d.Out(now)
		d.Rearm(now, 51, 1)
	}
	rearmed := now
	d.Hit(rearmed.Add(10 * time.Millisecond))
	d.Spend(rearmed.Add(110 * time.Millisecond))
	now = rearmed.Add(300 * time.Millisecond)
	d.In(rearmed.Add(10 * time.Millisecond))
	now = d.Out(now)
	if n, ok := d.Rearm(now, 51, 1); !ok || n == 0 {
		t.Errorf("estimate %d (%v) of an arming after a slow attach, the process at a full CPU throughout; want one", n, ok)
	}
}

// TestDisarmThreadStarved: the process's CPU stays at two CPUs throughout
// (its other threads busy), while the thread that runs the line has a
// quarter of the CPU it wants with the probes in and all of it after.
// The process's CPU alone lets that arming's rate pass; the thread,
// watched from the arming after its first hit, does not.
func TestDisarmThreadStarved(t *testing.T) {
	const tid = 7
	// arming returns the second arming's estimate, with the line's thread
	// running and runnable in and out those parts of a second.
	arming := func(in, out schedTimes, sched bool) (uint64, bool) {
		now := time.Unix(1000, 0)
		var cpu time.Duration
		var th schedTimes
		d := Disarm{HitCost: time.Microsecond, CPU: func() time.Duration { return cpu }}
		if sched {
			d.Sched = func(t int) (time.Duration, time.Duration, bool) { return th.run, th.wait, t == tid }
		}
		pass := func(span time.Duration, per schedTimes) {
			now = now.Add(span)
			cpu += 2 * span
			th.run += time.Duration(float64(span) * per.run.Seconds())
			th.wait += time.Duration(float64(span) * per.wait.Seconds())
		}
		d.Armed(now)
		var n uint64
		var ok bool
		for range 2 { // the first arming's estimate, confirmed by the second
			d.Hit(now)
			d.Ran(tid)
			pass(12*time.Millisecond, in)
			d.Spend(now)
			back := d.Out(now)
			d.ThreadsOut()
			pass(back.Sub(now), out)
			n, ok = d.Rearm(now, 51, 1)
		}
		return n, ok
	}
	s := func(run, wait float64) schedTimes {
		return schedTimes{time.Duration(run * float64(time.Second)), time.Duration(wait * float64(time.Second))}
	}
	for _, c := range []struct {
		name    string
		in, out schedTimes
		sched   bool
		want    bool
	}{
		{"starved with the probes in", s(0.25, 0.75), s(1, 0), true, false},
		{"starved, not watched", s(0.25, 0.75), s(1, 0), false, true},
		{"at the CPU throughout", s(1, 0), s(1, 0), true, true},
		{"starved alike throughout", s(0.25, 0.75), s(0.25, 0.75), true, true},
		{"sleeping between calls", s(0.01, 0.03), s(0.02, 0), true, true},
		{"left by its goroutine after", s(0.25, 0.75), s(0, 0.001), true, true},
	} {
		if n, ok := arming(c.in, c.out, c.sched); ok != c.want || ok && n == 0 {
			t.Errorf("%s: estimate %d (%v), want one: %v", c.name, n, ok, c.want)
		}
	}
}
