package fleet

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateRelease = flag.Bool("update-release", false, "rewrite testdata/timeline_release.golden.gz from the current Timeline")

// releaseStream is a random hit stream of many hosts, the inputs that
// decide when Timeline releases: clocks with offsets and error bounds (some
// of a second or more, some missing, some absurd), watermarks with lags
// (some over MaxHold, some none), agents that fall silent, say they are
// final and come back, hits that come later than their agent promised,
// batches with parts, calls across hosts, quiet spells the reader fills
// with Advance, and messages without a stream time.
type releaseStream struct {
	opts   TimelineOptions
	events []releaseEvent
}

type releaseEvent struct {
	hit     *Hit
	mark    *Watermark
	advance time.Time
}

func newReleaseStream(seed uint64) releaseStream {
	r := rand.New(rand.NewPCG(seed, 16))
	base := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano()
	var s releaseStream
	switch r.IntN(3) {
	case 1:
		s.opts.MaxHold = 500 * time.Millisecond
	case 2:
		s.opts.MaxHold = 3 * time.Second
	}
	if r.IntN(2) == 0 {
		s.opts.Group = GroupBy("order")
	}
	type host struct {
		name       string
		clock      *ClockReading
		lag        time.Duration
		mute       bool // silent from now on, until it wakes
		final      bool
		lastMarkAt int64
	}
	hosts := make([]*host, 3+r.IntN(60))
	for i := range hosts {
		h := &host{name: fmt.Sprintf("h%02d", i), lag: time.Duration(5+r.IntN(300)) * time.Millisecond}
		switch n := r.IntN(20); {
		case n == 0:
			// No clock server answered.
		case n == 1:
			h.clock = &ClockReading{Offset: int64(r.IntN(5)) * int64(time.Hour), Bound: int64(time.Millisecond)}
		case n == 2:
			h.clock = &ClockReading{Offset: r.Int64N(int64(time.Second)), Bound: int64(time.Second + time.Duration(r.IntN(2))*time.Second)}
		default:
			h.clock = &ClockReading{Offset: r.Int64N(int64(100*time.Millisecond)) - int64(50*time.Millisecond), Bound: int64(20*time.Microsecond) + r.Int64N(int64(3*time.Millisecond))}
		}
		switch r.IntN(10) {
		case 0:
			h.lag = 0
		case 1:
			h.lag = 4 * time.Second
		}
		hosts[i] = h
	}
	traces := []string{"0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"}
	spans := []string{"00f067aa0ba902b7", "b7ad6b7169203331"}
	now := base
	seq := uint64(0)
	stamp := func() time.Time {
		if r.IntN(200) == 0 {
			return time.Time{}
		}
		return time.Unix(0, now)
	}
	agentNow := func(h *host, at int64) int64 {
		if h.clock == nil {
			return at
		}
		return at - h.clock.Offset
	}
	for range 600 + r.IntN(600) {
		// The stream's time goes on, by a second or more now and then.
		switch n := r.IntN(100); {
		case n == 0:
			now += int64(time.Second) + r.Int64N(int64(3*time.Second))
		case n < 5:
			now += r.Int64N(int64(200 * time.Millisecond))
		default:
			now += r.Int64N(int64(3 * time.Millisecond))
		}
		h := hosts[r.IntN(len(hosts))]
		switch n := r.IntN(1000); {
		case n < 8:
			h.mute = !h.mute
			continue
		case n < 30:
			s.events = append(s.events, releaseEvent{advance: time.Unix(0, now-r.Int64N(int64(50*time.Millisecond)))})
			continue
		}
		if h.mute {
			continue
		}
		if r.IntN(4) == 0 || now-h.lastMarkAt > int64(time.Second) {
			// A watermark: every hit captured before Time is in the
			// stream already; a clock estimate that moves a little.
			if h.clock != nil && r.IntN(5) == 0 {
				c := *h.clock
				c.Offset += r.Int64N(int64(200*time.Microsecond)) - int64(100*time.Microsecond)
				h.clock = &c
			}
			h.final = r.IntN(150) == 0
			h.lastMarkAt = now
			seq++
			w := &Watermark{Host: h.name, Time: agentNow(h, now-r.Int64N(int64(h.lag)+1)), Lag: Duration(h.lag), Clock: h.clock, Final: h.final, Seq: seq, ServerTime: stamp()}
			s.events = append(s.events, releaseEvent{mark: w})
			continue
		}
		// A hit, or a batch of them: captured within the agent's lag,
		// or later now and then.
		seq++
		parts := 1
		if r.IntN(5) == 0 {
			parts = 2 + r.IntN(4)
		}
		transit := r.Int64N(int64(h.lag) + 1)
		if r.IntN(30) == 0 {
			transit += int64(h.lag) + r.Int64N(int64(3*time.Second))
		}
		st := stamp()
		at := now - transit
		for part := range parts {
			hit := &Hit{Tracepoint: "tp", Host: h.name, Pid: 100, Goroutine: int64(r.IntN(4)), Time: agentNow(h, at), Clock: h.clock, Seq: seq, Part: part, ServerTime: st}
			at += r.Int64N(int64(50 * time.Microsecond))
			if r.IntN(4) == 0 {
				hit.Trace = &TraceContext{TraceID: traces[r.IntN(2)], SpanID: spans[r.IntN(2)], Remote: r.IntN(2) == 0}
			}
			if r.IntN(3) == 0 {
				hit.Args = []Variable{{Name: "order", Value: fmt.Sprint(r.IntN(5))}}
			}
			s.events = append(s.events, releaseEvent{hit: hit})
		}
	}
	return s
}

// replay feeds the stream to a new Timeline and writes, call by call,
// what it released and the notices it gave (sorted: which of several
// agents found silent at once comes first is not part of the order),
// then what Flush releases and what Hosts says.
func (s releaseStream) replay(w io.Writer, check func(*Timeline)) {
	tl := NewTimeline(s.opts)
	base := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano()
	put := func(i int, out []Placed) {
		for _, p := range out {
			fmt.Fprintf(w, "%d %d %s %s c=%d", i, p.Order, p.Host, HitNumber(p.Seq, p.Part), p.CoordinatedTime.UnixNano()-base)
			if p.Late {
				fmt.Fprint(w, " late")
			}
			if p.Uncertain {
				fmt.Fprintf(w, " uncertain=%s", HitNumber(p.UncertainWith, p.UncertainWithPart))
			}
			if p.OrderedByCall != 0 {
				fmt.Fprintf(w, " call=%s", HitNumber(p.OrderedByCall, p.OrderedByCallPart))
			}
			if p.Group != "" {
				fmt.Fprintf(w, " group=%s", p.Group)
			}
			if p.Note != "" {
				fmt.Fprintf(w, " note=%q", p.Note)
			}
			fmt.Fprintln(w)
		}
		ns := tl.Notices()
		slices.Sort(ns)
		for _, n := range ns {
			fmt.Fprintf(w, "%d ! %s\n", i, n)
		}
	}
	for i, e := range s.events {
		switch {
		case e.hit != nil:
			put(i, tl.AddHit(*e.hit))
		case e.mark != nil:
			put(i, tl.AddWatermark(*e.mark))
		default:
			put(i, tl.Advance(e.advance))
		}
		if check != nil {
			check(tl)
		}
	}
	put(len(s.events), tl.Flush())
	for _, h := range tl.Hosts() {
		fmt.Fprintf(w, "host %s lag=%v behind=%v final=%v\n", h.Host, h.Lag, h.Behind, h.Final)
	}
}

const releaseSeeds = 24

// TestTimelineReleaseRecorded replays random streams and compares what the
// timeline releases, placement by placement, with what it released on the
// same streams before release kept the lowest frontier incrementally: the
// order, the late and uncertain marks, the notes and the notices. After
// every call it also checks the incremental frontier against a scan of
// every agent, the way release worked it out before.
func TestTimelineReleaseRecorded(t *testing.T) {
	const golden = "testdata/timeline_release.golden.gz"
	var got bytes.Buffer
	for seed := range uint64(releaseSeeds) {
		fmt.Fprintf(&got, "seed %d\n", seed)
		newReleaseStream(seed).replay(&got, func(tl *Timeline) { checkFrontier(t, seed, tl) })
	}
	if *updateRelease {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(got.Bytes())
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.Open(golden)
	if err != nil {
		t.Fatalf("reading the recorded releases: %v (write them with -update-release)", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			seed := ""
			for j := i; j >= 0 && j < len(wl); j-- {
				if strings.HasPrefix(wl[j], "seed ") {
					seed = wl[j]
					break
				}
			}
			t.Fatalf("%s, line %d:\n got %s\nwant %s", seed, i+1, g, w)
		}
	}
}

// checkFrontier checks what release keeps of the agents against a scan of
// every one, as release worked it out before it kept it: the lowest
// frontier, and the agents that may be found silent, by when they were
// last heard from.
func checkFrontier(t *testing.T, seed uint64, tl *Timeline) {
	t.Helper()
	if tl.now == math.MinInt64 {
		return
	}
	want := int64(math.MaxInt64)
	var talking []*timelineAgent
	for _, a := range tl.agents {
		want = min(want, tl.frontier(a))
		if !a.final && !a.silent {
			if tl.now-a.last > int64(silentAfter) {
				t.Fatalf("seed %d: host %s silent for %v and not said so", seed, a.host, time.Duration(tl.now-a.last))
			}
			talking = append(talking, a)
		}
	}
	if got := tl.lowestFrontier(); got != want {
		t.Fatalf("seed %d: lowest frontier %d, a scan of the agents says %d", seed, got, want)
	}
	var listed []*timelineAgent
	for a := tl.talking.first; a != nil; a = a.next {
		if len(listed) > 0 && listed[len(listed)-1].last > a.last {
			t.Fatalf("seed %d: host %s heard from at %d listed after %s at %d", seed, a.host, a.last, listed[len(listed)-1].host, listed[len(listed)-1].last)
		}
		listed = append(listed, a)
	}
	if len(listed) != len(talking) {
		t.Fatalf("seed %d: %d agents listed as talking, %d are", seed, len(listed), len(talking))
	}
}
