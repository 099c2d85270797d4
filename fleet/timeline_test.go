package fleet_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func TestClockOffsetFromMinimumRTT(t *testing.T) {
	var c fleet.Clock
	if _, ok := c.Reading(t0); ok {
		t.Fatal("a clock with no sample has a reading")
	}
	// The agent runs 40 ms behind the server: server = agent + 40ms.
	skew := 40 * time.Millisecond
	add := func(at time.Time, up, down time.Duration) {
		t.Helper()
		if !c.Add(at, at.Add(up+skew), at.Add(up+down)) {
			t.Fatal("an exchange in order was refused")
		}
	}
	add(t0, 5*time.Millisecond, time.Millisecond)                        // slow, lopsided
	add(t0.Add(time.Second), 100*time.Microsecond, 100*time.Microsecond) // fast, symmetric
	add(t0.Add(2*time.Second), 3*time.Millisecond, 3*time.Millisecond)
	r, ok := c.Reading(t0.Add(2 * time.Second))
	if !ok {
		t.Fatal("no reading")
	}
	if d := time.Duration(r.Offset) - skew; d < -time.Microsecond || d > time.Microsecond {
		t.Errorf("offset %v, want %v (the fastest exchange's)", time.Duration(r.Offset), skew)
	}
	if r.Bound < int64(100*time.Microsecond) || r.Bound > int64(250*time.Microsecond) {
		t.Errorf("bound %v, want RTT/2 = 100µs plus drift and resolution", time.Duration(r.Bound))
	}
	// The bound grows with the sample's age.
	later, _ := c.Reading(t0.Add(61 * time.Second))
	if later.Bound <= r.Bound {
		t.Errorf("bound %v a minute later, want more than %v", time.Duration(later.Bound), time.Duration(r.Bound))
	}
	// Samples out of the window are forgotten.
	if _, ok := c.Reading(t0.Add(time.Hour)); ok {
		t.Error("an hour-old sample still gives a reading")
	}
	if c.Add(t0, t0, t0.Add(-time.Millisecond)) {
		t.Error("an exchange received before it was sent was taken")
	}
}

// hit makes a hit of host captured at server time at (ms after t0) on a
// clock offset by off, arriving at arr.
func hit(host string, seq uint64, at, arr, off, bound time.Duration) fleet.Hit {
	return fleet.Hit{
		Tracepoint: "tp", Host: host, Pid: 1, Seq: seq,
		Time:       t0.Add(at - off).UnixNano(),
		Clock:      &fleet.ClockReading{Offset: int64(off), Bound: int64(bound)},
		ServerTime: t0.Add(arr),
	}
}

func mark(host string, at, arr, lag, off, bound time.Duration) fleet.Watermark {
	return fleet.Watermark{Host: host, Time: t0.Add(at - off).UnixNano(), Lag: fleet.Duration(lag),
		Clock: &fleet.ClockReading{Offset: int64(off), Bound: int64(bound)}, ServerTime: t0.Add(arr)}
}

func seqs(ps []fleet.Placed) []uint64 {
	var s []uint64
	for _, p := range ps {
		s = append(s, p.Seq)
	}
	return s
}

func TestTimelineOrdersAcrossSkewedClocks(t *testing.T) {
	ms := time.Millisecond
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	var out []fleet.Placed
	lag := 150 * ms
	for _, h := range []string{"a", "b", "c"} {
		out = append(out, tl.AddWatermark(mark(h, 0, 0, lag, 0, 100*time.Microsecond))...)
	}
	// Ran a (10ms), b (11ms), c (12ms); arrived c, b, a; clocks -40, 0, +35 ms.
	out = append(out, tl.AddHit(hit("c", 1, 12*ms, 20*ms, 35*ms, 100*time.Microsecond))...)
	out = append(out, tl.AddHit(hit("b", 2, 11*ms, 30*ms, 0, 100*time.Microsecond))...)
	out = append(out, tl.AddHit(hit("a", 3, 10*ms, 100*ms, -40*ms, 100*time.Microsecond))...)
	if len(out) != 0 {
		t.Fatalf("released %v before the agents' lag passed", seqs(out))
	}
	// Stream time passes the lag (and the first second, in which agents
	// not yet heard from may still speak): everything goes, in order.
	out = tl.AddWatermark(mark("a", 1300*ms, 1300*ms, lag, -40*ms, 100*time.Microsecond))
	if got, want := seqs(out), []uint64{3, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	for i, p := range out {
		if p.Late || p.Uncertain || p.Order != uint64(i+1) {
			t.Errorf("hit %d: order %d late %v uncertain %v, want order %d, neither mark", p.Seq, p.Order, p.Late, p.Uncertain, i+1)
		}
	}
	if want := t0.Add(10 * ms); !out[0].CoordinatedTime.Equal(want) {
		t.Errorf("coordinated time %v, want %v", out[0].CoordinatedTime, want)
	}
}

func TestTimelineMarksUncertainPairs(t *testing.T) {
	ms := time.Millisecond
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	tl.AddHit(hit("a", 1, 10*ms, 11*ms, 0, 2*ms))
	tl.AddHit(hit("b", 2, 11*ms, 12*ms, 0, 2*ms)) // 1 ms apart, bounds 2+2 ms: uncertain
	tl.AddHit(hit("a", 3, 20*ms, 21*ms, 0, 2*ms)) // 9 ms after: certain
	out := tl.Flush()
	if got := seqs(out); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("order %v", got)
	}
	if !out[1].Uncertain || out[1].UncertainWith != 1 {
		t.Errorf("hit 2: uncertain %v with %d, want uncertain with 1", out[1].Uncertain, out[1].UncertainWith)
	}
	if out[0].Uncertain || out[2].Uncertain {
		t.Errorf("hits 1 and 3 marked uncertain")
	}

	// The hits of a batch share its sequence: the mark names the part too.
	tl = fleet.NewTimeline(fleet.TimelineOptions{})
	first, second := hit("a", 7, 10*ms, 11*ms, 0, 2*ms), hit("a", 7, 10*ms+500*time.Microsecond, 11*ms, 0, 2*ms)
	second.Part = 1
	tl.AddHit(first)
	tl.AddHit(second)
	tl.AddHit(hit("b", 8, 11*ms, 12*ms, 0, 2*ms))
	out = tl.Flush()
	if len(out) != 3 || !out[2].Uncertain || fleet.HitNumber(out[2].UncertainWith, out[2].UncertainWithPart) != "7.1" {
		t.Errorf("after a batch's second hit: %+v, want the third uncertain with #7.1", out)
	}
}

// TestTimelineCallOrder: a caller's hits and its callee's, on hosts whose
// clocks are known within 1 ms, share the caller's span. The clocks alone
// cannot order the caller's first hit and the callee's first (0.5 ms
// apart), nor the callee's last and the caller's next (1 ms apart); the
// callee's other hit, certainly after the caller's first and certainly
// before its next, settles both: the caller's goroutine waited while the
// callee ran. Without that witness, or with another trace, they stay
// uncertain.
func TestTimelineCallOrder(t *testing.T) {
	ms := time.Millisecond
	caller := &fleet.TraceContext{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"}
	callee := &fleet.TraceContext{TraceID: caller.TraceID, SpanID: caller.SpanID, Remote: true}
	traced := func(h fleet.Hit, tc *fleet.TraceContext) fleet.Hit { h.Trace = tc; return h }
	x1 := traced(hit("gw", 1, 10*ms, 11*ms, 0, ms), caller)       // before the call
	y1 := traced(hit("pay", 2, 10*ms+ms/2, 12*ms, 0, ms), callee) // 0.5 ms after x1
	y2 := traced(hit("pay", 3, 13*ms, 14*ms, 0, ms), callee)      // certainly after x1
	x2 := traced(hit("gw", 4, 14*ms, 15*ms, 0, ms), caller)       // after the call returned
	other := traced(hit("pay", 5, 20*ms, 21*ms, 0, ms), callee)   // keeps y2's witness honest
	run := func(hs ...fleet.Hit) []fleet.Placed {
		tl := fleet.NewTimeline(fleet.TimelineOptions{})
		for _, h := range hs {
			tl.AddHit(h)
		}
		return slices.Clone(tl.Flush())
	}
	bySeq := func(ps []fleet.Placed, seq uint64) fleet.Placed {
		i := slices.IndexFunc(ps, func(p fleet.Placed) bool { return p.Seq == seq })
		if i < 0 {
			t.Fatalf("hit %d not placed: %v", seq, seqs(ps))
		}
		return ps[i]
	}

	out := run(x1, y1, y2, x2, other)
	if got := seqs(out); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("order %v, want 1 2 3 4 5", got)
	}
	for _, c := range []struct{ seq, after uint64 }{{2, 1}, {4, 3}} {
		p := bySeq(out, c.seq)
		if p.Uncertain || p.OrderedByCall != c.after {
			t.Errorf("hit %d: uncertain %v (with %d), ordered by the call after %d; want ordered after %d, not uncertain", c.seq, p.Uncertain, p.UncertainWith, p.OrderedByCall, c.after)
		}
	}

	// No witness: the callee's only hit is as close to both.
	out = run(x1, y1, x2)
	if p := bySeq(out, 2); !p.Uncertain || p.OrderedByCall != 0 {
		t.Errorf("without a witness, hit 2: uncertain %v, ordered by call %d; want uncertain", p.Uncertain, p.OrderedByCall)
	}
	// Another trace: no call between them.
	stranger := traced(hit("pay", 2, 10*ms+ms/2, 12*ms, 0, ms), &fleet.TraceContext{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: caller.SpanID, Remote: true})
	out = run(x1, stranger, y2, x2)
	if p := bySeq(out, 2); !p.Uncertain {
		t.Errorf("a hit of another trace 0.5 ms from the caller's is not marked uncertain")
	}
}

func TestTimelineLateAfterOutage(t *testing.T) {
	ms := time.Millisecond
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	lag := 150 * ms
	tl.AddWatermark(mark("a", 0, 0, lag, 0, 0))
	tl.AddWatermark(mark("b", 0, 0, lag, 0, 0))
	// b is cut off from 0 to 10 s; a goes on.
	var out []fleet.Placed
	for i := 1; i <= 50; i++ {
		at := time.Duration(i) * 200 * ms
		out = append(out, tl.AddHit(hit("a", uint64(i), at, at+ms, 0, 0))...)
		out = append(out, tl.AddWatermark(mark("a", at, at+ms, lag, 0, 0))...)
	}
	if n := len(out); n < 40 {
		t.Fatalf("only %d of a's 50 hits released while b was silent: a silent agent froze the timeline", n)
	}
	if !slices.ContainsFunc(tl.Notices(), func(s string) bool { return strings.Contains(s, "host b: no word") }) {
		t.Error("no notice names the silent agent b")
	}
	// b returns with the hit it captured at 5 s: behind the frontier, late.
	out = tl.AddHit(hit("b", 100, 5*time.Second, 10*time.Second+2*ms, 0, 0))
	i := slices.IndexFunc(out, func(p fleet.Placed) bool { return p.Seq == 100 })
	if i < 0 || !out[i].Late {
		t.Fatalf("b's hit after the outage: %+v, want released at once, marked late", out)
	}
	// A hit b captured after its return is in place.
	tl.AddHit(hit("b", 101, 10*time.Second+10*ms, 10*time.Second+11*ms, 0, 0))
	out = tl.Flush()
	if len(out) == 0 || out[len(out)-1].Seq != 101 || out[len(out)-1].Late {
		t.Errorf("b's hit after its return: %+v, want in place, not late", out)
	}
}

func TestTimelineAbsurdTimes(t *testing.T) {
	ms := time.Millisecond
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	// a's clock is three hours ahead and it believes the offset is 0.
	tl.AddHit(hit("a", 1, 3*time.Hour, 10*ms, 0, 0))
	tl.AddHit(hit("b", 2, 5*ms, 6*ms, 0, 0))
	far := hit("c", 3, 0, 12*ms, 0, 0)
	far.Time = -1 << 62 // far past
	tl.AddHit(far)
	nc := hit("d", 4, 8*ms, 14*ms, 0, 0)
	nc.Clock = nil
	tl.AddHit(nc)
	// e's clock is three hours ahead too, but it compared it with the
	// server's: corrected, it ran first.
	tl.AddHit(hit("e", 5, 4*ms, 15*ms, -3*time.Hour, 0))
	out := tl.Flush()
	if got := seqs(out); !slices.Equal(got, []uint64{5, 2, 1, 3, 4}) {
		t.Fatalf("order %v, want e's and b's hits, then the three doubtful ones by arrival", got)
	}
	if out[0].Uncertain || out[0].Note != "" {
		t.Errorf("e's hit, its clock corrected: uncertain %v, note %q; want neither", out[0].Uncertain, out[0].Note)
	}
	out = out[1:]
	for _, p := range out[1:] {
		if !p.Uncertain || p.Note == "" {
			t.Errorf("hit %d: uncertain %v note %q, want marked with a note", p.Seq, p.Uncertain, p.Note)
		}
	}
	notes := strings.Join(tl.Notices(), "\n")
	if !strings.Contains(notes, "host a: capture time 2h59m") {
		t.Errorf("notices %q do not report a's clock", notes)
	}
}

func TestTimelineStuckWatermark(t *testing.T) {
	ms := time.Millisecond
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	var out []fleet.Placed
	for i := 1; i <= 30; i++ {
		at := time.Duration(i) * 100 * ms
		// b keeps sending the same watermark and asks for an hour.
		out = append(out, tl.AddWatermark(mark("b", 0, at, time.Hour, 0, 0))...)
		out = append(out, tl.AddHit(hit("a", uint64(i), at, at+ms, 0, 0))...)
	}
	if len(out) < 5 {
		t.Fatalf("%d hits released in 3 s behind a stuck watermark", len(out))
	}
	if !slices.ContainsFunc(tl.Notices(), func(s string) bool { return strings.Contains(s, "host b: its agent asks for a wait of 1h0m0s") }) {
		t.Error("no notice names b")
	}
}

// FuzzTimeline checks the ordering core against a reference sort: agents
// with clocks off by random offsets, estimated within their bounds, publish
// hits within their promised lag, in random interleavings. Every hit comes
// out once; none is late; the hits come out in coordinated-time order; and
// no two hits are in the wrong order of execution unless the later one is
// marked uncertain.
func FuzzTimeline(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint16(200))
	f.Add(uint64(7), uint8(1), uint16(50))
	f.Add(uint64(42), uint8(5), uint16(500))
	f.Fuzz(func(t *testing.T, seed uint64, nHosts uint8, nHits uint16) {
		hosts := int(nHosts%6) + 1
		n := int(nHits % 1000)
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		type agentClock struct {
			off, est, bound, lag time.Duration
		}
		clocks := make([]agentClock, hosts)
		for i := range clocks {
			off := time.Duration(rng.Int64N(int64(2*time.Hour))) - time.Hour
			bound := time.Duration(rng.Int64N(int64(5*time.Millisecond))) + time.Microsecond
			est := off + time.Duration(rng.Int64N(int64(2*bound+1))) - bound
			clocks[i] = agentClock{off: off, est: est, bound: bound, lag: time.Duration(rng.Int64N(int64(300*time.Millisecond))) + time.Millisecond}
		}
		type event struct {
			arr   time.Duration
			host  int
			order int // per host, publish order
			hit   *fleet.Hit
			wm    *fleet.Watermark
			truth time.Duration
		}
		var evs []event
		for h := range hosts {
			// Every agent starts with a watermark.
			c := clocks[h]
			w := fleet.Watermark{Host: fmt.Sprint("h", h), Time: t0.Add(-c.off).UnixNano(), Lag: fleet.Duration(c.lag),
				Clock: &fleet.ClockReading{Offset: int64(c.est), Bound: int64(c.bound)}}
			evs = append(evs, event{host: h, order: len(evs), wm: &w})
		}
		var truth = map[uint64]time.Duration{}
		last := make([]time.Duration, hosts) // last arrival per host: each agent publishes in order
		cap := make([]time.Duration, hosts)  // last capture per host
		for i := range n {
			h := rng.IntN(hosts)
			c := clocks[h]
			at := cap[h] + time.Duration(rng.Int64N(int64(20*time.Millisecond)))
			cap[h] = at
			arr := max(at+time.Duration(rng.Int64N(int64(c.lag))), last[h])
			last[h] = arr
			seq := uint64(i + 1)
			hh := fleet.Hit{Tracepoint: "tp", Host: fmt.Sprint("h", h), Pid: 1, Seq: seq,
				Time: t0.Add(at - c.off).UnixNano(), Clock: &fleet.ClockReading{Offset: int64(c.est), Bound: int64(c.bound)}}
			truth[seq] = at
			evs = append(evs, event{arr: arr, host: h, order: len(evs), hit: &hh, truth: at})
			if rng.IntN(4) == 0 {
				// A watermark: every hit captured so far is published.
				w := fleet.Watermark{Host: hh.Host, Time: t0.Add(at - c.off).UnixNano(), Lag: fleet.Duration(c.lag),
					Clock: &fleet.ClockReading{Offset: int64(c.est), Bound: int64(c.bound)}}
				evs = append(evs, event{arr: arr, host: h, order: len(evs), wm: &w})
			}
		}
		// The stream: by arrival, each host's messages in its own order.
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].arr < evs[j].arr })
		tl := fleet.NewTimeline(fleet.TimelineOptions{})
		var out []fleet.Placed
		for _, e := range evs {
			st := t0.Add(e.arr)
			if e.hit != nil {
				e.hit.ServerTime = st
				out = append(out, tl.AddHit(*e.hit)...)
			} else {
				e.wm.ServerTime = st
				out = append(out, tl.AddWatermark(*e.wm)...)
			}
		}
		out = append(out, tl.Flush()...)
		if len(out) != n {
			t.Fatalf("%d hits out, %d in", len(out), n)
		}
		seen := map[uint64]bool{}
		for i, p := range out {
			if seen[p.Seq] {
				t.Fatalf("hit %d out twice", p.Seq)
			}
			seen[p.Seq] = true
			if p.Late {
				t.Fatalf("hit %d marked late though its agent kept its promise", p.Seq)
			}
			if p.Order != uint64(i+1) {
				t.Fatalf("hit %d has order %d at %d", p.Seq, p.Order, i+1)
			}
			if i > 0 && p.CoordinatedTime.Before(out[i-1].CoordinatedTime) {
				t.Fatalf("hit %d (%v) after hit %d (%v): not in coordinated-time order", p.Seq, p.CoordinatedTime, out[i-1].Seq, out[i-1].CoordinatedTime)
			}
		}
		// Never inverted silently: for every pair in the wrong order of
		// execution, the later one is marked uncertain.
		for i := range out {
			for j := i + 1; j < len(out) && j < i+64; j++ {
				x, y := out[i], out[j]
				if truth[y.Seq] < truth[x.Seq] && !y.Uncertain {
					t.Fatalf("hit %d (ran at %v on %s) placed after hit %d (ran at %v on %s) without a mark", y.Seq, truth[y.Seq], y.Host, x.Seq, truth[x.Seq], x.Host)
				}
			}
		}
	})
}

// TestTimelineClockStepIsNotLate: an agent's offset estimate moves between
// its watermark and a hit (within the bounds they carry). A hit captured
// after the watermark, on the agent's own clock, kept the agent's promise:
// if the new estimate puts it before what the watermark released, its
// place is uncertain, not late. A hit captured before the watermark and
// published after it broke the promise: late.
func TestTimelineClockStepIsNotLate(t *testing.T) {
	ms := time.Millisecond
	s := time.Second
	lag := 150 * ms
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	tl.AddWatermark(mark("a", 0, 0, lag, 20*ms, 2*ms))
	tl.AddWatermark(mark("b", 0, 0, lag, 0, ms))
	// Past the reader's warm-up; the watermark (+20 ms offset) releases
	// up to 9.998 s coordinated, 9.980 s on a's clock.
	tl.AddWatermark(mark("a", 10*s, 10*s+ms, lag, 20*ms, 2*ms))

	// b's hit at 9.995 s is released (b promised up to 10 s).
	tl.AddHit(hit("b", 1, 10*s-5*ms, 10*s+2*ms, 0, ms))
	if out := tl.AddWatermark(mark("b", 10*s, 10*s+3*ms, lag, 0, ms)); len(out) != 1 || out[0].Seq != 1 {
		t.Fatalf("b's hit before both frontiers: %+v, want released", out)
	}

	// Captured at 9.990 s on a's clock, after its promise; its estimate
	// is now 0 ± 25 ms, which puts it at 9.990 s coordinated: before b's
	// hit, released already.
	out := tl.AddHit(hit("a", 2, 10*s-10*ms, 10*s+5*ms, 0, 25*ms))
	if len(out) != 1 || out[0].Late || !out[0].Uncertain || out[0].UncertainWith != 1 {
		t.Fatalf("a hit that kept its agent's promise, behind the frontier by a clock step: %+v, want uncertain against b's hit 1, not late", out)
	}
	// Captured at 9.970 s on a's clock, before its promise: late.
	out = tl.AddHit(hit("a", 3, 10*s-30*ms, 10*s+6*ms, 0, 25*ms))
	if len(out) != 1 || !out[0].Late {
		t.Fatalf("a hit published after a watermark past it: %+v, want late", out)
	}
}

// TestCaptureGroup: the names of a group that are expressions are
// captured, once; arguments and locals are left to Args and Locals; an
// empty name or one that is not Go is refused.
func TestCaptureGroup(t *testing.T) {
	base := fleet.Capture{Args: true, Exprs: []string{"o.ID"}}
	c, err := base.CaptureGroup("orderID", "o.ID", "req.Header[\"X-Request-Id\"]")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"o.ID", "req.Header[\"X-Request-Id\"]"}; !slices.Equal(c.Exprs, want) {
		t.Errorf("exprs %q, want %q", c.Exprs, want)
	}
	if len(base.Exprs) != 1 {
		t.Errorf("CaptureGroup changed its receiver's exprs: %q", base.Exprs)
	}
	for _, bad := range []string{"", " ", "req.(", "a b"} {
		if _, err := base.CaptureGroup(bad); err == nil {
			t.Errorf("CaptureGroup(%q) took it", bad)
		}
	}
}
