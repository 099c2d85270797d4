package agenttest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// SelfcheckDir is the target whose two loops check their own results: a
// tracer that corrupts a register or memory under it makes it exit with
// "WRONG …" (see testdata/targets/selfcheck).
const SelfcheckDir = "../testdata/targets/selfcheck"

// HitsFor collects the hits of tracepoint id that a target captured in the
// span d from the first one, by their capture time: a decoder slowed by
// load delivers them late, not fewer. Notices of drops alone (DropsOnly)
// are kept too; hits of other tracepoints are skipped, faults fail the test.
func HitsFor(t testing.TB, hits <-chan agent.Hit, id string, d time.Duration) []agent.Hit {
	t.Helper()
	var got []agent.Hit
	var first int64
	deadline := time.After(2*time.Minute + d)
	for {
		h, ok := nextHit(t, hits, id, deadline)
		if !ok {
			t.Fatalf("no hit of %s captured %v after its first within %v (%d so far)", id, d, 2*time.Minute+d, len(got))
		}
		if !h.DropsOnly {
			if first == 0 {
				first = h.Time
			}
			if h.Time >= first+int64(d) {
				return got
			}
		}
		got = append(got, h)
	}
}

// nextHit returns the next hit or notice of drops of tracepoint id from
// hits, skipping other tracepoints'; a fault or a closed channel fails the
// test. ok is false once deadline passes.
func nextHit(t testing.TB, hits <-chan agent.Hit, id string, deadline <-chan time.Time) (h agent.Hit, ok bool) {
	t.Helper()
	for {
		select {
		case h, open := <-hits:
			if !open {
				t.Fatal("the hit channel closed")
			}
			if h.Fault != nil {
				t.Fatalf("fault: %v", h.Fault)
			}
			if h.Tracepoint == id {
				return h, true
			}
		case <-deadline:
			return agent.Hit{}, false
		}
	}
}

// Rearms describes what hits say of the probes taken out and put back:
// the hits, the put-backs they tell of (an estimate, Uncounted.N, or none,
// Uncounted.Unknown), and the sum of the estimates.
func Rearms(hits []agent.Hit) (n, estimates int, uncounted uint64) {
	for _, h := range hits {
		if !h.DropsOnly {
			n++
		}
		if h.Uncounted.Any() {
			estimates++
			uncounted += h.Uncounted.N
		}
	}
	return n, estimates, uncounted
}

// HitsInWindows collects the hits of tracepoint id, on a line that runs
// without pause, over k whole windows of its probes being in (see
// ArmedWindows), however long a loaded machine makes them (it backs off to
// longer windows by design), and over more whole windows until a hit has
// told of the hits run with the probes out (an estimate, or that there is
// none). A backend that
// applies the limit where it decodes (a condition the BPF program does not
// evaluate) takes the probes out only once it has decoded the hit that
// spent the allowance: a decoder that load starves a whole window behind
// puts them back at once, and the window passes with its hits refused and
// counted instead (a stressed CI run saw two such windows in a row). It
// stops at the hit that begins the next window, which is left out. Notices
// of drops alone are kept; hits of other tracepoints are skipped, faults
// fail the test.
func HitsInWindows(t testing.TB, hits <-chan agent.Hit, id string, k int) []agent.Hit {
	t.Helper()
	var got []agent.Hit
	deadline := time.After(3 * time.Minute)
	for {
		h, ok := nextHit(t, hits, id, deadline)
		if !ok {
			_, estimates, _ := Rearms(got)
			t.Fatalf("%d windows of %s's probes in 3 minutes with %d estimates, want %d windows and an estimate (%d hits)", ArmedWindows(got), id, estimates, k+1, len(got))
		}
		if !h.DropsOnly {
			if n := ArmedWindows(got); n >= k && ArmedWindows(append(got, h)) > n {
				if _, estimates, _ := Rearms(got); estimates > 0 {
					return got
				}
			}
		}
		got = append(got, h)
	}
}

// CheckWindows checks hits collected by HitsInWindows, at a rate of 50 a
// second, over the windows they span (see ArmedWindows): about 50 hits a
// window (a few more trickle in while the probes come out). A hit the
// allowance took but that was then dropped, counted, counts as one of the
// window's. A window longer than a second is windows whose allowance the
// line did not spend, run at under 50 a second (with Delve's breakpoints
// each hit stops the process: a stressed run's line ran 26 times a second
// for 9.5 s), which ArmedWindows cannot tell apart: they may hold 50 for
// each second past the first.
func CheckWindows(t testing.TB, what string, hits []agent.Hit) {
	t.Helper()
	k := ArmedWindows(hits)
	n, estimates, uncounted := Rearms(hits)
	var dropped uint64
	for _, h := range hits {
		dropped += h.Dropped
	}
	t.Logf("%s: %d hits and %d dropped in %d windows, %d estimates of %d hits run with the probes out", what, n, dropped, k, estimates, uncounted)
	if taken := n + int(dropped); taken < 45*k || n > 100*k+int(50*Overlong(hits).Seconds()) {
		t.Errorf("%s: %d hits and %d dropped in %d windows at 50 a second; want about 50 a window:\n%s", what, n, dropped, k, DescribeWindows(hits))
	}
}

// CheckEstimates checks what hits of a tracepoint whose line counts its
// own runs in argument arg (selfcheck's step and tick) say of the runs no
// hit reached, as the status would show it: span by span between two hits
// the drops counted are never more than the runs missed (a lower bound);
// and where the hits leave the status an estimate (some put-back carried
// one, none said there was none, the last hit says none waits), the drops
// counted and estimated from the first hit to the last are within a factor
// of 2 of the runs missed. The sum, not each span: an estimate rides on the
// next hit decoded, which a decoder behind on a loaded host may take from
// before the gap it estimates. It returns the spans whose hits carried an
// estimate and those that said there was none.
func CheckEstimates(t testing.TB, what string, hits []agent.Hit, arg string) (estimated, unestimated int) {
	t.Helper()
	var missed, reported uint64 // from the first hit to the last
	var last, dropped, uncounted uint64
	started, unknown, waiting := false, false, false
	for _, h := range hits {
		dropped += h.Dropped
		uncounted += h.Uncounted.N
		unknown = unknown || h.Uncounted.Unknown
		waiting = h.Waiting
		if h.DropsOnly {
			continue
		}
		v := ArgUint(t, h.Hit, arg)
		if started {
			if v <= last {
				t.Fatalf("%s: %s = %d after %d", what, arg, v, last)
			}
			m := v - last - 1
			if dropped > m {
				t.Errorf("%s: %d drops counted between the hits with %s = %d and %d: more than the %d runs missed", what, dropped, arg, last, v, m)
			}
			switch {
			case unknown:
				unestimated++
			case uncounted > 0:
				estimated++
			}
			missed += m
			reported += dropped + uncounted
		}
		started, last = true, v
		dropped, uncounted, unknown = 0, 0, false
	}
	shown := estimated > 0 && unestimated == 0 && !waiting
	t.Logf("%s: %d spans with an estimate, %d saying there is none (the status shows an estimate: %v); %d runs missed, %d reported dropped or estimated", what, estimated, unestimated, shown, missed, reported)
	if shown && (2*reported < missed || reported > 2*missed) {
		t.Errorf("%s: %d runs reported dropped or estimated where %d were missed: not within 2x\n%s", what, reported, missed, DescribeWindows(hits))
	}
	if !shown {
		return 0, unestimated
	}
	return estimated, unestimated
}

// DescribeWindows renders, a line each, the windows of hits (see
// ArmedWindows): when each begins after the first hit, the gap before it,
// and its hits, drops and estimate.
func DescribeWindows(hits []agent.Hit) string {
	var b strings.Builder
	var first, last, start int64
	n, dropped, uncounted, windows := 0, uint64(0), uint64(0), 0
	said := false
	flush := func() {
		if windows > 0 {
			fmt.Fprintf(&b, "  window %d at %v: %d hits, %d dropped, %d estimated, %v long\n", windows, time.Duration(start-first).Round(time.Millisecond), n, dropped, uncounted, time.Duration(last-start).Round(time.Millisecond))
		}
	}
	for _, h := range hits {
		said = said || h.Uncounted.Any() || h.Dropped > 0
		if !h.DropsOnly {
			if windows == 0 || said && h.Time-last > int64(windowGap) {
				flush()
				if windows == 0 {
					first = h.Time
				} else {
					fmt.Fprintf(&b, "  gap of %v\n", time.Duration(h.Time-last).Round(time.Millisecond))
				}
				windows++
				start, n, dropped, uncounted = h.Time, 0, 0, 0
			}
			n++
			said = false
			last = h.Time
		}
		dropped += h.Dropped
		uncounted += h.Uncounted.N
	}
	flush()
	return b.String()
}

// windowGap is the least time between two hits of a line that runs without
// pause that may say the probes were out between them.
const windowGap = 300 * time.Millisecond

// ArmedWindows counts the windows the probes were in during hits. A window
// begins at the first hit, and at each hit after a gap of windowGap that
// says what ran in the gap: an estimate of the hits run with the probes
// out, or a count of hits dropped with them in (refused by the allowance
// after a decoder that load starves took the probes out late, or by a full
// ring buffer), on the hit or on a notice of drops before it. A gap that
// says nothing is not a window's end: the line did not run (a loaded
// machine starved the target, or the worker that each hit stops it for;
// a stressed CI run saw three such gaps in 71 hits), and one that comes
// with drops but no gap is a window going on. A window begins each second,
// or less often once the line backs off (a loaded machine takes the probes
// out late, wasting traps).
func ArmedWindows(hits []agent.Hit) int {
	n := 0
	var last int64
	said := false // the hits and notices since the last hit say what ran
	for _, h := range hits {
		said = said || h.Uncounted.Any() || h.Dropped > 0
		if h.DropsOnly {
			continue
		}
		if n == 0 || said && h.Time-last > int64(windowGap) {
			n++
		}
		said = false
		last = h.Time
	}
	return n
}

// Overlong sums what the windows of hits (see ArmedWindows) last, from
// their first hit to their last, past a second each.
func Overlong(hits []agent.Hit) time.Duration {
	var over time.Duration
	var start, last int64
	said, begun := false, false
	for _, h := range hits {
		said = said || h.Uncounted.Any() || h.Dropped > 0
		if h.DropsOnly {
			continue
		}
		if !begun || said && h.Time-last > int64(windowGap) {
			over += max(0, time.Duration(last-start)-time.Second)
			start, begun = h.Time, true
		}
		said = false
		last = h.Time
	}
	return over + max(0, time.Duration(last-start)-time.Second)
}

// CheckQuiet checks what a backend tells of tracepoint id's hits (rate
// limited, on a line that ran calls times in a burst that has ended) once
// the line is quiet: the hits and notices that come until none has for
// 2 s end with a notice (DropsOnly) saying that there is no estimate of
// the hits run while the probes were out, and none waits; the hits and
// the drops told are at least the allowance, rate, and at most the calls.
// A burst longer than a window may have had notices of its own before.
func CheckQuiet(t testing.TB, hits <-chan agent.Hit, id string, calls, rate int) {
	t.Helper()
	var got []agent.Hit
	deadline := time.After(time.Minute)
	for {
		select {
		case <-deadline:
			t.Fatalf("no notice that the line went quiet in a minute after the burst, the last of %d hits and notices:\n%s", len(got), DescribeWindows(got))
		default:
		}
		h, ok := nextHit(t, hits, id, time.After(2*time.Second))
		if ok {
			got = append(got, h)
			continue
		}
		if n := len(got); n > 0 && got[n-1].DropsOnly {
			break
		}
	}
	n, _, _ := Rearms(got)
	var dropped uint64
	for _, h := range got {
		dropped += h.Dropped
	}
	last := got[len(got)-1]
	t.Logf("%d hits and %d dropped of the burst's %d calls; the notice: %d dropped, %+v, waiting %v", n, dropped, calls, last.Dropped, last.Uncounted, last.Waiting)
	if !last.Uncounted.Unknown || last.Uncounted.N != 0 || last.Waiting {
		t.Errorf("the notice says %+v (waiting %v), want no estimate and none waiting: the burst ended while the probes were out", last.Uncounted, last.Waiting)
	}
	if n < rate || uint64(n)+dropped > uint64(calls) {
		t.Errorf("%d hits and %d dropped of %d calls, want at least the allowance, %d, and no more than the calls", n, dropped, calls, rate)
	}
}

// CheckSelfcheck fails the test unless the selfcheck process p is alive,
// found no wrong result, and its hot loop still runs.
func CheckSelfcheck(t testing.TB, p *Proc) {
	t.Helper()
	if strings.Contains(p.Output(), "WRONG") || !p.Alive() {
		t.Fatalf("the target was hurt: alive %v, output ends %q", p.Alive(), tail(p.Output()))
	}
	before := hotCalls(p.Output())
	CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := hotCalls(p.Output()); n <= before {
			return fmt.Errorf("the hot loop is stuck at %d calls", n)
		}
		return nil
	})
}

// hotCalls reads the last "ALIVE hot=N" selfcheck printed.
func hotCalls(out string) int64 {
	i := strings.LastIndex(out, "ALIVE hot=")
	if i < 0 {
		return -1
	}
	f := strings.Fields(out[i+len("ALIVE hot="):])
	if len(f) == 0 {
		return -1
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

func tail(s string) string {
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}

// Churn sets spec on tg n times, as a replacement of itself or after a
// clear by turns, with hits draining between: probes taken out and put
// back meet replacements and clears at any moment. Faults fail the test.
func Churn(t testing.TB, tg agent.Target, spec agent.Tracepoint, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := tg.Set(ctx, spec); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		drain := time.After(time.Duration(50+i*37%200) * time.Millisecond)
		for done := false; !done; {
			select {
			case h := <-tg.Hits():
				if h.Fault != nil {
					t.Fatalf("fault after set %d: %v", i, h.Fault)
				}
			case <-drain:
				done = true
			}
		}
		if i%2 == 1 {
			if err := tg.Clear(ctx, spec.ID); err != nil {
				t.Fatalf("clear %d: %v", i, err)
			}
		}
	}
}

// RearmStorm checks a target whose tracepoint spec, on the selfcheck
// target's hot line, was just set with the disarm window shortened to 5 ms
// (agent.WindowEnv): the probes go out and back in a storm, and hits still
// arrive; then replacements and clears meet the storm at any moment, and
// the target p stays alive and right.
//
// It waits for 10 re-arms (hits carrying an estimate) rather than counting
// them in a span: on a loaded machine the re-arming timers and the decoder
// run late, which makes the storm slower, not wrong (3–5 s at load
// average 15; a stressed CI run saw 1 in 3 s of capture time).
func RearmStorm(t testing.TB, tg agent.Target, p *Proc, spec agent.Tracepoint) {
	t.Helper()
	const want = 10
	var n, estimates int
	deadline := time.After(time.Minute)
	for start := time.Now(); estimates < want; {
		h, ok := nextHit(t, tg.Hits(), spec.ID, deadline)
		if !ok {
			t.Fatalf("%d re-arms with an estimate among %d hits in a minute with a 5 ms window; want a storm of %d", estimates, n, want)
		}
		if !h.DropsOnly {
			n++
		}
		if h.Uncounted.Any() {
			estimates++
		}
		if estimates == want {
			t.Logf("%d re-arms with an estimate among %d hits in %v", estimates, n, time.Since(start).Round(time.Millisecond))
		}
	}
	Churn(t, tg, spec, 20)
	CheckSelfcheck(t, p)
}

// ArgUint returns the unsigned integer argument name of h, failing the
// test if it has none.
func ArgUint(t testing.TB, h fleet.Hit, name string) uint64 {
	t.Helper()
	for _, a := range h.Args {
		if a.Name == name {
			i, err := strconv.ParseUint(a.Value, 10, 64)
			if err != nil {
				t.Fatalf("%s = %q", name, a.Value)
			}
			return i
		}
	}
	t.Fatalf("no argument %s in %+v", name, h.Args)
	return 0
}
