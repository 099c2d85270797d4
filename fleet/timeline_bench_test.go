package fleet_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// benchStream is a stream of encoded hits of three hosts with skewed
// clocks, arriving out of order within their lag, with a watermark per
// host every 50 hits: what a reader decodes.
func benchStream(n int) (hits [][]byte, marks map[int]fleet.Watermark) {
	marks = make(map[int]fleet.Watermark)
	offs := []time.Duration{40 * time.Millisecond, 0, -35 * time.Millisecond}
	for i := range n {
		h := i % 3
		at := time.Duration(i) * 100 * time.Microsecond
		// Each host's clock is off; they arrive 100 µs after capture.
		hit := fleet.Hit{
			Tracepoint: "tp", Host: fmt.Sprint("host-", h), Pid: 100 + h, Goroutine: 7,
			Time:  t0.Add(at - offs[h]).UnixNano(),
			Clock: &fleet.ClockReading{Offset: int64(offs[h]), Bound: int64(100 * time.Microsecond)},
			File:  "/src/pay/charge.go", Line: 42, Function: "main.charge",
			Args:   []fleet.Variable{{Name: "amount", Type: "float64", Value: "30.25"}},
			Locals: []fleet.Variable{{Name: "approved", Type: "bool", Value: "true"}},
			Stack:  []fleet.Frame{{Function: "main.charge", File: "/src/pay/charge.go", Line: 42}},
		}
		hits = append(hits, fleet.Encode(&hit))
		if i%50 == 49 {
			marks[i] = fleet.Watermark{Host: hit.Host, Time: hit.Time, Lag: fleet.Duration(150 * time.Millisecond), Clock: hit.Clock}
		}
	}
	return hits, marks
}

// BenchmarkTimeline measures the ordering core against the anchor every
// reader pays already, decoding the hit (the arrival-order path): run
// with -bench Timeline and compare the two ns/op; the ordering's own
// hits/s is reported too.
func BenchmarkTimeline(b *testing.B) {
	const n = 100_000
	data, marks := benchStream(n)
	run := func(b *testing.B, order bool) {
		b.ReportAllocs()
		for b.Loop() {
			tl := fleet.NewTimeline(fleet.TimelineOptions{})
			for i, d := range data {
				var h fleet.Hit
				if err := fleet.Decode(d, "hit", &h); err != nil {
					b.Fatal(err)
				}
				// Stream time: the hit's capture plus 100 µs of transit.
				h.ServerTime = time.Unix(0, h.Time+h.Clock.Offset+int64(100*time.Microsecond))
				h.Seq = uint64(i + 1)
				if !order {
					continue
				}
				tl.AddHit(h)
				if w, ok := marks[i]; ok {
					w.ServerTime = h.ServerTime
					tl.AddWatermark(w)
				}
			}
			tl.Flush()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "hits/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/hit")
	}
	b.Run("arrival", func(b *testing.B) { run(b, false) })
	b.Run("timeline", func(b *testing.B) { run(b, true) })
}

// BenchmarkTimelineCore is the ordering alone, on decoded hits.
func BenchmarkTimelineCore(b *testing.B) {
	const n = 100_000
	data, marks := benchStream(n)
	hits := make([]fleet.Hit, n)
	for i, d := range data {
		if err := fleet.Decode(d, "hit", &hits[i]); err != nil {
			b.Fatal(err)
		}
		hits[i].ServerTime = time.Unix(0, hits[i].Time+hits[i].Clock.Offset+int64(100*time.Microsecond))
		hits[i].Seq = uint64(i + 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		tl := fleet.NewTimeline(fleet.TimelineOptions{})
		for i := range hits {
			tl.AddHit(hits[i])
			if w, ok := marks[i]; ok {
				w.ServerTime = hits[i].ServerTime
				tl.AddWatermark(w)
			}
		}
		tl.Flush()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "hits/s")
}

// BenchmarkTimelineHosts is the ordering of one hit stream of 10,000 hits
// a second, over 5 s of stream time, shared by 10, 200 and 1000 agents:
// each host's clock is off by its own offset, and each publishes a
// watermark every 10 of its hits. What a hit costs the timeline should not
// grow with the number of agents: run with -bench TimelineHosts and
// compare the ns/hit of the three.
func BenchmarkTimelineHosts(b *testing.B) {
	const n = 50_000
	for _, hosts := range []int{10, 200, 1000} {
		b.Run(fmt.Sprint("hosts=", hosts), func(b *testing.B) {
			hits := make([]fleet.Hit, n)
			marks := make(map[int]fleet.Watermark)
			names := make([]string, hosts)
			for i := range names {
				names[i] = fmt.Sprintf("host-%04d", i)
			}
			for i := range hits {
				h := i % hosts
				off := time.Duration(h%97-48) * time.Millisecond
				at := time.Duration(i) * 100 * time.Microsecond
				clock := &fleet.ClockReading{Offset: int64(off), Bound: int64(100 * time.Microsecond)}
				hits[i] = fleet.Hit{Tracepoint: "tp", Host: names[h], Pid: 100, Goroutine: 7,
					Time: t0.Add(at - off).UnixNano(), Clock: clock, Seq: uint64(i + 1),
					ServerTime: t0.Add(at + 100*time.Microsecond)}
				if (i/hosts)%10 == 9 {
					marks[i] = fleet.Watermark{Host: names[h], Time: hits[i].Time, Lag: fleet.Duration(150 * time.Millisecond), Clock: clock, ServerTime: hits[i].ServerTime}
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				tl := fleet.NewTimeline(fleet.TimelineOptions{})
				for i := range hits {
					tl.AddHit(hits[i])
					if w, ok := marks[i]; ok {
						tl.AddWatermark(w)
					}
				}
				tl.Flush()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/hit")
		})
	}
}
