package dap_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/dap/daptest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
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
// the DAP client holding its row, asked for with riptrace/hits when a
// riptraceHits event says something is new, as the plugins do, with 10
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
	seen := make(map[string]bool)
	for len(lat) < n {
		var news dap.HitsEvent
		c.AwaitCustomEvent(b, dap.EventHits, &news, func() bool { return news.Count > 0 })
		c.Send(b, dap.RequestHits, nil)
		var view struct {
			Breakpoints []dap.BreakpointHits `json:"breakpoints"`
		}
		c.ExpectCustomResponse(b, dap.RequestHits, &view)
		for _, bh := range view.Breakpoints {
			for _, ph := range bh.Processes {
				for _, r := range ph.Hits {
					if name := fleet.HitNumber(r.Seq, r.Part); !seen[name] {
						seen[name] = true
						lat = append(lat, time.Since(r.ServerTime))
					}
				}
			}
		}
		c.Drop(func(m godap.Message) bool {
			cu, custom := m.(*daptest.Custom)
			_, output := m.(*godap.OutputEvent)
			return output || custom && cu.Event == dap.EventHits
		})
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

// BenchmarkSessionPerHit measures what a debug session spends on each hit
// of its breakpoint, as in `make bench-fleet`'s sustained runs: realistic
// hits of 1 KiB from 30 or 1000 hosts, several to a message with a
// watermark after each, published through fleet's HitPublisher to a real
// nats-server and read by a real session with the console in its default
// summary. The anchor is the same hits published to a tracepoint nobody
// reads, in the same process: the session's cost is the process's CPU and
// allocations per hit beyond the anchor's.
//
//	go test ./dap -run XXX -bench SessionPerHit -benchtime 1x
func BenchmarkSessionPerHit(b *testing.B) {
	// From 30 hosts, the session's own work; from 1000, as in bench-fleet,
	// also its timeline's, which follows every host heard from.
	for _, hosts := range []int{30, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) { benchSessionPerHit(b, hosts) })
	}
}

func benchSessionPerHit(b *testing.B, hosts int) {
	f := newFleet(b)
	co := b.TempDir()
	file := filepath.Join(co, "internal", "orders", "handler.go")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		b.Fatal(err)
	}
	src := "package orders\n" + strings.Repeat("\t// total, err := h.charge(ctx, req)\n", 120)
	if err := os.WriteFile(filepath.Join(co, "go.mod"), []byte("module example.com/shop\n\ngo 1.26\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	c := f.session()
	f.attach(c, map[string]any{"cwd": co, "consoleHits": "summary"})
	bps := setBreakpoints(b, c, file, godap.SourceBreakpoint{Line: 88})
	var tp string
	for _, id := range f.declared() {
		if strings.HasPrefix(id, "dap-") {
			tp = id
		}
	}
	if tp == "" {
		b.Fatal("the breakpoint's tracepoint is not declared")
	}
	perMsg := max(8, 960/hosts)
	n := max(b.N, 30000)
	n -= n % (hosts * perMsg)
	pubs := make([]*fleet.HitPublisher, hosts)
	for i := range pubs {
		var err error
		if pubs[i], err = f.c.NewHitPublisher(fmt.Sprintf("sim-%03d", i), 30*time.Second, 256); err != nil {
			b.Fatal(err)
		}
	}
	// publish sends n hits of tracepoint to, round robin over the hosts,
	// and waits for their acks.
	run := 0
	publish := func(to string) {
		run++
		var acks []jetstream.PubAckFuture
		for k := 0; k < n/perMsg; k++ {
			i := k % hosts
			host := fmt.Sprintf("sim-%03d", i)
			var hits [][]byte
			for j := range perMsg {
				h := fleettest.RealisticHit(to, host, k*perMsg+j, 1024)
				hits = append(hits, fleet.Encode(&h))
			}
			id := fmt.Sprintf("%s-%d-%d", to, run, k)
			ack, err := pubs[i].Publish(pubs[i].BatchMsg(to, hits, id))
			if err != nil {
				b.Fatal(err)
			}
			w := fleet.Watermark{Host: host, Time: time.Now().UnixNano(), Lag: fleet.Duration(150 * time.Millisecond)}
			mark, err := pubs[i].Publish(pubs[i].MarkMsg(to, fleet.Encode(&w), id+"-mark"))
			if err != nil {
				b.Fatal(err)
			}
			acks = append(acks, ack, mark)
		}
		for _, a := range acks {
			select {
			case <-a.Ok():
			case err := <-a.Err():
				b.Fatalf("publishing: %v", err)
			}
		}
	}
	// counted waits for the console's next count line of the breakpoint
	// and returns how many hits it says the breakpoint had in all (the
	// hits view, with a thousand processes, is too big to poll).
	inAll := regexp.MustCompile(fmt.Sprintf(`^breakpoint %d: .*\((\d+) in all\)`, bps[0].Id))
	counted := func() uint64 {
		var got uint64
		c.AwaitOutputEvent(b, "a count line", func(e *godap.OutputEvent) bool {
			m := inAll.FindStringSubmatch(e.Body.Output)
			if m != nil {
				got, _ = strconv.ParseUint(m[1], 10, 64)
			}
			return m != nil
		})
		return got
	}
	type usage struct {
		cpu     time.Duration
		mallocs uint64
	}
	measure := func() usage {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return usage{time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ms.Mallocs}
	}
	drop := func() {
		c.Drop(func(m godap.Message) bool {
			switch m := m.(type) {
			case *godap.OutputEvent:
				return !strings.Contains(m.Body.Output, " in all)")
			case *daptest.Custom:
				return m.Event != ""
			}
			return false
		})
	}

	b.ResetTimer()
	a0 := measure()
	publish("nobody-reads")
	a1 := measure()
	s0 := measure()
	publish(tp)
	for counted() < uint64(n) {
		drop()
	}
	s1 := measure()
	b.StopTimer()
	drop()
	anchor := float64(a1.cpu-a0.cpu) / float64(n)
	with := float64(s1.cpu-s0.cpu) / float64(n)
	b.ReportMetric(float64(n), "hits")
	b.ReportMetric(anchor/1e3, "anchor-µs/hit")
	b.ReportMetric(with/1e3, "µs/hit")
	b.ReportMetric((with-anchor)/1e3, "session-µs/hit")
	b.ReportMetric(float64(s1.mallocs-s0.mallocs)/float64(n)-float64(a1.mallocs-a0.mallocs)/float64(n), "session-allocs/hit")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkViewRequestsUnderLoad measures what the editors' hits view and
// timeline panel wait for on a busy machine: the time from sending
// riptrace/hits or riptrace/timeline to holding its answer, one request in
// flight as the plugins do, with 10 breakpoints at up to 50 hits a second
// each (about 500 hits a second) while the benchmark keeps every CPU busy
// with loops of its own. It also reports the bytes a second the adapter
// pushes unasked in riptraceHits events: in an editor every byte of an
// event crosses the workbench (twice in VS Code) whether a view shows it
// or not, and pushed bytes, unlike answers, do not slow down when the
// editor does.
//
//	go test ./dap -run XXX -bench ViewRequestsUnderLoad -benchtime 1x
func BenchmarkViewRequestsUnderLoad(b *testing.B) {
	f := newFleet(b)
	exe := f.exe("views")
	f.startAgent(f.host, exe)
	f.startTarget(exe, "-every", "0")
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "maxHitsPerSecond": 50, "consoleHits": "summary", "backend": "delve"})
	line := agenttest.MarkerLine(b, loopSrc, "process")
	var bps []godap.SourceBreakpoint
	for k := range 10 {
		bps = append(bps, godap.SourceBreakpoint{Line: line, Condition: fmt.Sprintf("n%%10 == %d", k)})
	}
	setBreakpoints(b, c, loopSrc, bps...)
	// All ten hit, before the machine gets busy: installing ten
	// tracepoints on a loaded machine is not what is measured.
	testsupport.CheckFor(b, 2*time.Minute, 100*time.Millisecond, func() error {
		c.Send(b, dap.RequestHits, nil)
		var hv struct {
			Breakpoints []dap.BreakpointHits `json:"breakpoints"`
		}
		c.ExpectCustomResponse(b, dap.RequestHits, &hv)
		c.Drop(func(m godap.Message) bool { _, ok := m.(godap.EventMessage); return ok })
		hit := 0
		for _, bh := range hv.Breakpoints {
			if bh.Count > 0 {
				hit++
			}
		}
		if hit < 10 {
			return fmt.Errorf("%d of 10 breakpoints hit", hit)
		}
		return nil
	})
	busyLoops(b)

	var eventBytes int
	drop := func() {
		c.Drop(func(m godap.Message) bool {
			switch m := m.(type) {
			case *godap.OutputEvent:
				return true
			case *daptest.Custom:
				if m.Event == dap.EventHits {
					eventBytes += len(m.Body)
				}
				return m.Event != ""
			}
			return false
		})
	}
	drop()
	eventBytes = 0
	var hitsLat, timelineLat []time.Duration
	var last, first, counted uint64
	rows := 0
	b.ResetTimer()
	start := time.Now()
	for time.Since(start) < 20*time.Second || len(timelineLat) < 20 {
		t0 := time.Now()
		c.Send(b, dap.RequestHits, nil)
		var hv struct {
			Breakpoints []dap.BreakpointHits `json:"breakpoints"`
		}
		c.ExpectCustomResponse(b, dap.RequestHits, &hv)
		hitsLat = append(hitsLat, time.Since(t0))
		if len(hv.Breakpoints) != 10 {
			b.Fatalf("riptrace/hits answered %d breakpoints, want 10", len(hv.Breakpoints))
		}
		counted = 0
		for _, bh := range hv.Breakpoints {
			counted += bh.Count
		}
		if first == 0 {
			first = counted
		}
		t0 = time.Now()
		c.Send(b, dap.RequestTimeline, map[string]any{"since": last, "limit": 50})
		var tl struct {
			Hits []dap.HitRow `json:"hits"`
		}
		c.ExpectCustomResponse(b, dap.RequestTimeline, &tl)
		timelineLat = append(timelineLat, time.Since(t0))
		if n := len(tl.Hits); n > 0 {
			last = tl.Hits[n-1].Order
			rows += n
		}
		drop()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	drop()
	if rows == 0 {
		b.Fatal("riptrace/timeline answered no rows in all")
	}
	b.ReportMetric(float64(len(hitsLat)), "requests")
	b.ReportMetric(ms(percentile(hitsLat, 50)), "hits-p50-ms")
	b.ReportMetric(ms(percentile(hitsLat, 99)), "hits-p99-ms")
	b.ReportMetric(ms(slices.Max(hitsLat)), "hits-max-ms")
	b.ReportMetric(ms(percentile(timelineLat, 50)), "timeline-p50-ms")
	b.ReportMetric(ms(percentile(timelineLat, 99)), "timeline-p99-ms")
	b.ReportMetric(ms(slices.Max(timelineLat)), "timeline-max-ms")
	b.ReportMetric(float64(eventBytes)/elapsed.Seconds()/1024, "event-KiB/s")
	b.ReportMetric(float64(counted-first)/elapsed.Seconds(), "hits/s")
	b.ReportMetric(loadavg(), "loadavg")
	b.ReportMetric(0, "ns/op")
}

// busyLoops keeps every CPU busy for the rest of the benchmark: a loop of
// a shell per CPU, killed at its end. More would measure how little of a
// CPU the traced target gets, not the adapter.
func busyLoops(b *testing.B) {
	for range runtime.NumCPU() {
		hog := exec.Command("sh", "-c", "while :; do :; done")
		if err := hog.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			hog.Process.Kill()
			hog.Wait()
		})
	}
}

// loadavg is the machine's load average over the last minute.
func loadavg() float64 {
	data, _ := os.ReadFile("/proc/loadavg")
	f, _ := strconv.ParseFloat(strings.Fields(string(data) + " 0")[0], 64)
	return f
}
