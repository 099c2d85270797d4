package agent_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestWatermarks reads the hit stream of an agent whose clock runs 40 ms
// behind the server's: its hits carry the offset that corrects it (its
// watermarks' pace is logged, a timing the benchmark measures),
// and the timeline over the stream places every hit in the process's own
// order, or marked late where a starved agent broke its promise.
func TestWatermarks(t *testing.T) {
	t.Parallel()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	stopClock, err := c.ServeClock()
	if err != nil {
		t.Fatal(err)
	}
	defer stopClock()
	n, host, exe, bin := pacedTarget(t, "marks")
	// A generous promise: on a loaded machine the eBPF backend may take
	// longer than the default to decode a burst, and this test is about the
	// order, not the wait.
	cfg := agent.Config{Host: host, Processes: []string{exe}, ClockSkew: -40 * time.Millisecond, TimelineLag: time.Second}
	var eb agent.Backend
	if ebpf.Available() == nil {
		eb, cfg.BackendName = ebpf.New(), agent.BackendEBPF
	}
	var log syncBuffer
	agenttest.RunAgentWith(t, s, cfg, &log, eb)
	p := agenttest.Start(t, bin, "-rate", "200")
	spec := tickSpec(t, fmt.Sprintf("marks-%d", n), p.Pid, 5000)
	if err := c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	awaitStatusOn(t, c, spec.ID, installed(p.Pid))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := c.Hits(ctx, fleet.HitOptions{Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	var (
		hits, marks, placed int
		lastMark, start     time.Time
		lastSeq             = -1
	)
	for hits < 600 {
		h, w, err := r.NextMessage(ctx)
		if err != nil {
			t.Fatalf("reading the stream after %d hits and %d watermarks: %v\nagent log:\n%s", hits, marks, err, log.String())
		}
		if w != nil {
			if w.Host != host {
				continue
			}
			if !lastMark.IsZero() {
				// A timing, not an order: logged, since an agent starved of
				// CPU keeps it late (BenchmarkTimelineLatency measures it).
				if gap := w.ServerTime.Sub(lastMark); gap > fleet.WatermarkKeepalive+500*time.Millisecond {
					t.Logf("watermark #%d came %v after the one before it", w.Seq, gap)
				}
			}
			if start.IsZero() {
				start = w.ServerTime
			}
			lastMark = w.ServerTime
			marks++
			for _, pl := range tl.AddWatermark(*w) {
				placed++
				checkPlaced(t, pl, &lastSeq)
			}
			continue
		}
		if h.Tracepoint != spec.ID {
			continue
		}
		hits++
		if h.Clock == nil {
			t.Fatalf("hit #%d has no clock", h.Seq)
		}
		if d := time.Duration(h.Clock.Offset) - 40*time.Millisecond; d.Abs() > time.Duration(h.Clock.Bound)+2*time.Millisecond {
			t.Errorf("hit #%d: clock %s, want an offset of 40ms", h.Seq, h.Clock)
		}
		for _, pl := range tl.AddHit(h) {
			placed++
			checkPlaced(t, pl, &lastSeq)
		}
	}
	for _, pl := range tl.Flush() {
		placed++
		checkPlaced(t, pl, &lastSeq)
	}
	if placed != hits {
		t.Errorf("%d hits read, %d placed", hits, placed)
	}
	t.Logf("%d hits, %d watermarks over %v of stream time", hits, marks, lastMark.Sub(start).Round(time.Millisecond))
}

// checkPlaced checks a hit of the paced target in the timeline: after the
// call before it, or marked late. An agent that broke its promise (its
// decoder runs at nice 19, and a loaded machine may starve it) sends hits
// the timeline has passed: they must say so, never sit out of place.
var lastPlaced fleet.Placed

func checkPlaced(t *testing.T, p fleet.Placed, lastSeq *int) {
	t.Helper()
	if p.Late {
		t.Logf("hit #%d came late, and says so: coordinated %v, arrived %v", p.Seq, p.CoordinatedTime, p.ServerTime)
		return
	}
	v := fleettest.Var(p.Args, "seq")
	if v == nil {
		t.Fatalf("hit #%d has no argument seq", p.Seq)
	}
	var seq int
	fmt.Sscan(v.Value, &seq)
	if seq <= *lastSeq {
		t.Errorf("hit #%d (call %d) placed after call %d: %+v %v %v %v\nbefore: %+v %v %v %v", p.Seq, seq, *lastSeq, *p.Clock, p.Time, p.CoordinatedTime, p.ServerTime, *lastPlaced.Clock, lastPlaced.Time, lastPlaced.CoordinatedTime, lastPlaced.ServerTime)
	}
	lastPlaced = p
	*lastSeq = seq
}

// BenchmarkTimelineLatency measures, with a real agent and the default
// promise, how long a hit takes from its capture to its place in the
// timeline, against the anchor of the arrival-order path: the same hits
// read from the stream as they come. Run with -benchtime 1x; it reports
// p50 and p99 of both, in ms.
func BenchmarkTimelineLatency(b *testing.B) {
	s := fleettest.RunServer(b)
	c := fleettest.Connect(b, s)
	stopClock, err := c.ServeClock()
	if err != nil {
		b.Fatal(err)
	}
	defer stopClock()
	n, host, exe, bin := pacedTarget(b, "latency")
	cfg := agent.Config{Host: host, Processes: []string{exe}}
	var eb agent.Backend
	if ebpf.Available() == nil {
		eb, cfg.BackendName = ebpf.New(), agent.BackendEBPF
	}
	agenttest.RunAgentWith(b, s, cfg, io.Discard, eb)
	p := agenttest.Start(b, bin, "-rate", "100")
	spec := tickSpec(b, fmt.Sprintf("latency-%d", n), p.Pid, 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	statuses, err := c.WatchStatus(ctx, spec.ID)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Declare(context.Background(), spec); err != nil {
		b.Fatal(err)
	}
	for ev := range statuses {
		if installed(p.Pid)(ev) {
			break
		}
	}
	const perRun = 500
	var arrival, placed []time.Duration
	late := 0
	raw, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}})
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	tr, err := c.Timeline(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}}, fleet.TimelineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	// A reader's first second holds every hit for fleet.DefaultMaxHold,
	// in case an agent it has not heard from yet has hits on the way.
	warm := time.Now().Add(fleet.WatermarkKeepalive + fleet.DefaultMaxHold)
	for {
		pl, err := tr.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if pl.CoordinatedTime.After(warm) {
			break
		}
	}
	for {
		h, err := raw.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if time.Unix(0, h.Time).After(warm) {
			break
		}
	}
	for b.Loop() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range perRun {
				h, err := raw.Next(ctx)
				if err != nil {
					return
				}
				arrival = append(arrival, time.Since(time.Unix(0, h.Time)))
			}
		}()
		for range perRun {
			pl, err := tr.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			placed = append(placed, time.Since(pl.CoordinatedTime))
			if pl.Late {
				late++
			}
		}
		<-done
	}
	for _, l := range []struct {
		name string
		d    []time.Duration
	}{{"arrival", arrival}, {"placed", placed}} {
		slices.Sort(l.d)
		b.ReportMetric(float64(l.d[len(l.d)/2])/1e6, l.name+"-p50-ms")
		b.ReportMetric(float64(l.d[len(l.d)*99/100])/1e6, l.name+"-p99-ms")
	}
	b.ReportMetric(float64(late), "late")
}
