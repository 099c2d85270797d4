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
