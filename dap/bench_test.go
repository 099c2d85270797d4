package dap_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// benchHits is how many hits the latency benchmark measures at least.
const benchHits = 1000

// BenchmarkHitToOutput measures, for each hit, the time from the agent
// taking it (Hit.Time, same machine and clock) to the DAP client holding
// its output event, over at least benchHits hits of a target that runs the
// traced line back to back. The anchor is a plain fleet hit reader in the
// same process reading the same hits: the ratio is what the adapter adds
// to the hit stream itself.
//
//	go test ./dap -run XXX -bench HitToOutput -benchtime 1x
func BenchmarkHitToOutput(b *testing.B) {
	f := newFleet(b)
	exe := f.exe("bench")
	f.startAgent(f.host, exe)
	f.startTarget(exe, "-every", "0")
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "maxHitsPerSecond": 100000, "capture": map[string]any{"args": true, "locals": true, "stackDepth": 8}})

	n := max(b.N, benchHits)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	anchor, err := f.c.Hits(ctx, fleet.HitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer anchor.Close()
	anchorLat := make(chan []time.Duration, 1)
	go func() {
		var lat []time.Duration
		for len(lat) < n {
			h, err := anchor.Next(ctx)
			if err != nil {
				break
			}
			lat = append(lat, time.Since(time.Unix(0, h.Time)))
		}
		anchorLat <- lat
	}()

	b.ResetTimer()
	setBreakpoints(b, c, loopSrc, godap.SourceBreakpoint{Line: agenttest.MarkerLine(b, loopSrc, "process")})
	var lat []time.Duration
	for len(lat) < n {
		e := c.AwaitOutputEvent(b, "with a hit", func(e *godap.OutputEvent) bool { return len(e.Body.Data) > 0 })
		h := hitOf(b, e)
		lat = append(lat, time.Since(time.Unix(0, h.Time)))
	}
	b.StopTimer()
	c.Drop(func(m godap.Message) bool { _, ok := m.(*godap.OutputEvent); return ok })
	al := <-anchorLat
	if len(al) < n {
		b.Fatalf("the anchor reader saw %d hits of %d", len(al), n)
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	a50, a99 := percentile(al, 50), percentile(al, 99)
	b.ReportMetric(float64(len(lat)), "hits")
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(a50), "anchor-p50-ms")
	b.ReportMetric(ms(a99), "anchor-p99-ms")
	b.ReportMetric(float64(p99)/float64(a99), "p99-ratio")
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// BenchmarkBreakpointToVerified measures the time from setBreakpoints to the
// breakpoint event that says the tracepoint is installed on every target,
// from cold (no process attached: this includes attaching), for one and
// for 20 processes on one agent.
//
//	go test ./dap -run XXX -bench BreakpointToVerified -benchtime 3x
func BenchmarkBreakpointToVerified(b *testing.B) {
	for _, procs := range []int{1, 20} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			f := newFleet(b)
			exe := f.exe("verify")
			f.startAgent(f.host, exe)
			var targets []*agenttest.Proc
			for range procs {
				targets = append(targets, f.startTarget(exe))
			}
			c := f.session()
			f.attach(c, map[string]any{"processes": []string{exe}})
			line := agenttest.MarkerLine(b, loopSrc, "process")
			want := fmt.Sprintf("installed on %d of %d processes", procs, procs)
			b.ResetTimer()
			for range b.N {
				bps := setBreakpoints(b, c, loopSrc, godap.SourceBreakpoint{Line: line})
				c.AwaitBreakpointEvent(b, want, func(bp *godap.Breakpoint) bool {
					return bp.Id == bps[0].Id && strings.HasPrefix(bp.Message, want)
				})
				b.StopTimer()
				// Back to cold: no tracepoint, no process attached.
				setBreakpoints(b, c, loopSrc)
				c.Drop(func(m godap.Message) bool { _, ok := m.(*godap.OutputEvent); return ok })
				for _, p := range targets {
					testsupport.CheckFor(b, 60*time.Second, 20*time.Millisecond, func() error {
						att, err := f.attached(f.host, p.Pid)
						if err == nil && att {
							err = fmt.Errorf("still attached to %d", p.Pid)
						}
						return err
					})
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/verified")
		})
	}
}

// BenchmarkHitToHitsView measures what the editors' hits views wait for:
// the time from a hit reaching the stream (its ServerTime, same machine) to
// the DAP client holding the riptraceHits event that carries it, with 10
// breakpoints at up to 50 hits a second each (one line, ten conditions on
// n%10, the target running it back to back) and the console in
// its default summary. The anchor is a plain fleet hit reader in the same
// process reading the same hits.
//
//	go test ./dap -run XXX -bench HitToHitsView -benchtime 1x
func BenchmarkHitToHitsView(b *testing.B) {
	f := newFleet(b)
	exe := f.exe("hitsview")
	f.startAgent(f.host, exe)
	f.startTarget(exe, "-every", "0")
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "maxHitsPerSecond": 50, "consoleHits": "summary"})

	n := max(b.N, benchHits)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	anchor, err := f.c.Hits(ctx, fleet.HitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer anchor.Close()
	anchorLat := make(chan []time.Duration, 1)
	go func() {
		var lat []time.Duration
		for len(lat) < n {
			h, err := anchor.Next(ctx)
			if err != nil {
				break
			}
			lat = append(lat, time.Since(h.ServerTime))
		}
		anchorLat <- lat
	}()

	b.ResetTimer()
	line := agenttest.MarkerLine(b, loopSrc, "process")
	var bps []godap.SourceBreakpoint
	for k := range 10 {
		bps = append(bps, godap.SourceBreakpoint{Line: line, Condition: fmt.Sprintf("n%%10 == %d", k)})
	}
	setBreakpoints(b, c, loopSrc, bps...)
	var lat []time.Duration
	for len(lat) < n {
		var batch struct {
			Hits []dap.HitRow `json:"hits"`
		}
		c.AwaitCustomEvent(b, dap.EventHits, &batch, func() bool { return len(batch.Hits) > 0 })
		for _, r := range batch.Hits {
			lat = append(lat, time.Since(r.ServerTime))
		}
		c.Drop(func(m godap.Message) bool { _, ok := m.(*godap.OutputEvent); return ok })
	}
	b.StopTimer()
	al := <-anchorLat
	if len(al) < n {
		b.Fatalf("the anchor reader saw %d hits of %d", len(al), n)
	}
	b.ReportMetric(float64(len(lat)), "hits")
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(al, 50)), "anchor-p50-ms")
	b.ReportMetric(ms(percentile(al, 99)), "anchor-p99-ms")
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "hits/s")
	b.ReportMetric(0, "ns/op")
}
