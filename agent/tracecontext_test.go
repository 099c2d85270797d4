package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// otelDir is a target that passes an OpenTelemetry trace context from a
// caller to a callee over HTTP (its own module: it needs the OpenTelemetry
// API, which RipTrace does not).
var otelDir = filepath.Join("testdata", "targets", "otel")

// TestTraceContext: hits of functions that take a context.Context carry
// the W3C trace context OpenTelemetry keeps in it, read by walking the
// chain of contexts in the traced process, optimized or not. The caller
// and the callee of one request name the same trace; the callee's span is
// the caller's, received with the request. The timeline groups hits by
// trace id with no --group.
func TestTraceContext(t *testing.T) {
	t.Parallel()
	for _, opt := range []struct {
		name  string
		flags []string
		ebpf  bool
	}{{"optimized", nil, false}, {"noopt", []string{agenttest.NoOpt}, false}, {"ebpf", nil, true}} {
		t.Run(opt.name, func(t *testing.T) {
			t.Parallel()
			testTraceContext(t, opt.flags, opt.ebpf)
		})
	}
}

func testTraceContext(t *testing.T, flags []string, withEBPF bool) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	n := hostSeq.Add(1)
	host := fmt.Sprintf("otel-%d", n)
	callee, caller := fmt.Sprintf("otel-callee-%d-%d", os.Getpid(), n), fmt.Sprintf("otel-caller-%d-%d", os.Getpid(), n)
	built := agenttest.BuildTarget(t, otelDir, flags...)
	cfg := agent.Config{Host: host, Processes: []string{callee, caller}}
	var eb agent.Backend
	if withEBPF {
		if err := ebpf.Available(); err != nil {
			t.Skipf("no eBPF: %v", err)
		}
		eb, cfg.BackendName = ebpf.New(), agent.BackendEBPF
	}
	agenttest.RunAgentWith(t, s, cfg, nil, eb)
	srv := agenttest.Start(t, agenttest.Alias(t, built, callee), "-serve")
	cli := agenttest.Start(t, agenttest.Alias(t, built, caller), "-call", "http://"+srv.Addr)

	src := filepath.Join(otelDir, "main.go")
	for _, tp := range []struct {
		marker string
		pid    int
	}{{"work", srv.Pid}, {"call", cli.Pid}} {
		spec := &fleet.Spec{
			ID:       fmt.Sprintf("otel-%s-%d", tp.marker, n),
			Location: fleet.Location{Path: "otel/main.go", Line: agenttest.MarkerLine(t, src, tp.marker)},
			Selector: fleet.Selector{Pids: []int{tp.pid}},
			Capture:  fleet.Capture{Args: true},
			Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
		}
		if err := c.Declare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		awaitStatusOn(t, c, spec.ID, installed(tp.pid))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := c.Hits(ctx, fleet.HitOptions{Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tl := fleet.NewTimeline(fleet.TimelineOptions{})
	calls := make(map[string]fleet.TraceContext) // by trace id
	works := make(map[string]fleet.TraceContext)
	var placed []fleet.Placed
	untraced := 0
	for read := 0; withEBPF && read < 100 || !withEBPF && (len(calls) < 30 || len(works) < 30); read++ {
		h, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("reading hits after %d calls and %d works: %v", len(calls), len(works), err)
		}
		if h.Trace == nil && withEBPF {
			// The eBPF probe copies what the capture shows, not always
			// the contexts further down: no trace id, rather than a
			// wrong one.
			untraced++
			placed = append(placed, tl.AddHit(h)...)
			continue
		}
		if h.Trace == nil {
			t.Fatalf("hit #%d of %s (%s) has no trace context; errors %v", h.Seq, h.Function, h.Tracepoint, h.Errors)
		}
		tc := *h.Trace
		if len(tc.TraceID) != 32 || len(tc.SpanID) != 16 {
			t.Fatalf("hit #%d: trace context %+v, want 32 and 16 hex digits", h.Seq, tc)
		}
		switch h.Function {
		case "main.call":
			if tc.Remote {
				t.Errorf("caller's hit #%d: span %+v marked remote; the caller started it", h.Seq, tc)
			}
			calls[tc.TraceID] = tc
		case "main.work":
			if !tc.Remote {
				t.Errorf("callee's hit #%d: span %+v not remote; it came with the request", h.Seq, tc)
			}
			works[tc.TraceID] = tc
		}
		placed = append(placed, tl.AddHit(h)...)
	}
	placed = append(placed, tl.Flush()...)
	matched := 0
	for id, w := range works {
		if cl, ok := calls[id]; ok {
			matched++
			if cl.SpanID != w.SpanID {
				t.Errorf("trace %s: the callee's span %s is not the caller's %s", id, w.SpanID, cl.SpanID)
			}
		}
	}
	if withEBPF {
		t.Logf("eBPF: of 100 hits, %d callers' and %d callees' with their trace context, %d without", len(calls), len(works), untraced)
	} else if matched < 20 {
		t.Errorf("%d traces seen at both ends, want 20 or more (calls %d, works %d)", matched, len(calls), len(works))
	}
	for _, p := range placed {
		if p.Trace == nil {
			if p.Group != "" {
				t.Errorf("hit #%d has no trace context, yet is placed in group %q", p.Seq, p.Group)
			}
			continue
		}
		if p.Group != p.Trace.TraceID {
			t.Errorf("hit #%d placed in group %q, want its trace id %s", p.Seq, p.Group, p.Trace.TraceID)
		}
	}
}

// TestCallOrder: the caller and the callee of each request on two hosts
// whose clocks are 40 ms behind and three hours ahead of the server's
// (a clock hours off that compares itself with the server's is corrected,
// not reported, and reorders nothing). Per
// request the caller's hit before the call, the callee's two hits and the
// caller's hit after the answer must come out in that order, or the later
// one say it is uncertain or late; never inverted silently. A hit whose
// order the call settled (OrderedByCall) must be after the hit it names,
// and that hit must have run before it.
func TestCallOrder(t *testing.T) {
	t.Parallel()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	stopClock, err := c.ServeClock()
	if err != nil {
		t.Fatal(err)
	}
	defer stopClock()
	n := hostSeq.Add(1)
	callerHost, calleeHost := fmt.Sprintf("caller-%d", n), fmt.Sprintf("callee-%d", n)
	callee, caller := fmt.Sprintf("order-callee-%d-%d", os.Getpid(), n), fmt.Sprintf("order-caller-%d-%d", os.Getpid(), n)
	built := agenttest.BuildTarget(t, otelDir)
	agenttest.RunAgent(t, s, agent.Config{Host: calleeHost, Processes: []string{callee}, ClockSkew: 3 * time.Hour}, nil)
	agenttest.RunAgent(t, s, agent.Config{Host: callerHost, Processes: []string{caller}, ClockSkew: -40 * time.Millisecond}, nil)
	srv := agenttest.Start(t, agenttest.Alias(t, built, callee), "-serve")
	src := filepath.Join(otelDir, "main.go")
	declare := func(marker string, pid int) {
		spec := &fleet.Spec{
			ID:       fmt.Sprintf("order-%s-%d", marker, n),
			Location: fleet.Location{Path: "otel/main.go", Line: agenttest.MarkerLine(t, src, marker)},
			Selector: fleet.Selector{Pids: []int{pid}},
			Capture:  fleet.Capture{Args: true},
			Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
		}
		if err := c.Declare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		awaitStatusOn(t, c, spec.ID, installed(pid))
	}
	declare("work", srv.Pid)
	declare("finish", srv.Pid)
	// The caller starts once the callee is traced, and is traced before
	// its first request (it waits 3 s): every request has its four hits.
	cli := agenttest.Start(t, agenttest.Alias(t, built, caller), "-call", "http://"+srv.Addr, "-wait", "3s")
	declare("call", cli.Pid)
	declare("returned", cli.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tr, err := c.Timeline(ctx, fleet.HitOptions{Replay: true}, fleet.TimelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const requests = 60
	step := map[string]int{"main.call": 0, "main.work": 1, "main.finish": 2, "main.call.returned": 3}
	byTrace := make(map[string]*[4]*fleet.Placed)
	var placed []*fleet.Placed
	complete := 0
	for complete < requests {
		p, err := tr.Next(ctx)
		if err != nil {
			t.Fatalf("reading the timeline after %d complete requests: %v", complete, err)
		}
		if p.Trace == nil {
			t.Fatalf("hit #%d of %s has no trace context", p.Seq, p.Function)
		}
		if p.Note != "" {
			t.Errorf("hit #%d of %s on %s placed by its arrival: %s", p.Seq, p.Function, p.Host, p.Note)
		}
		pp := &p
		placed = append(placed, pp)
		k := p.Function
		if k == "main.call" && p.Tracepoint == fmt.Sprintf("order-returned-%d", n) {
			k = "main.call.returned"
		}
		r := byTrace[p.Trace.TraceID]
		if r == nil {
			r = new([4]*fleet.Placed)
			byTrace[p.Trace.TraceID] = r
		}
		r[step[k]] = pp
		if r[0] != nil && r[1] != nil && r[2] != nil && r[3] != nil {
			complete++
		}
	}
	inOrder, marked, settled := 0, 0, 0
	for id, r := range byTrace {
		if r[0] == nil || r[1] == nil || r[2] == nil || r[3] == nil {
			continue
		}
		ok := true
		for i := range 3 {
			a, b := r[i], r[i+1]
			if a.Order > b.Order {
				ok = false
				if !a.Uncertain && !a.Late && !b.Late {
					t.Errorf("trace %s: %s (order %d) placed after %s (order %d) that it ran before, with no mark", id, a.Function, a.Order, b.Function, b.Order)
				}
			}
		}
		if ok {
			inOrder++
		} else {
			marked++
		}
		for i, p := range r {
			if p.OrderedByCall == 0 {
				continue
			}
			settled++
			for j, q := range r {
				if q.Seq == p.OrderedByCall && q.Part == p.OrderedByCallPart && j > i {
					t.Errorf("trace %s: %s said to run after %s by the call, which ran after it", id, p.Function, q.Function)
				}
			}
		}
	}
	uncertain := 0
	for _, p := range placed {
		if p.Uncertain {
			uncertain++
		}
	}
	t.Logf("%d requests: %d in order, %d inverted and marked; %d hits ordered by the call, %d uncertain of %d", inOrder+marked, inOrder, marked, settled, uncertain, len(placed))
}
