package dap_test

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	godap "github.com/google/go-dap"

	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/dap/daptest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario/recording"
)

// checkoutRecording is a recording of examples/scenarios/checkout.yaml,
// made by riptrace run --record on the demo services.
var checkoutRecording, _ = filepath.Abs("../scenario/recording/testdata/checkout.hits.jsonl")

// TestReplayRecording attaches to a recording instead of a fleet: each
// recorded tracepoint is a breakpoint at its local line, the hits come in
// the order they ran, and the hits view, threads and snapshots show them
// as they show live hits. No NATS server runs in this test.
func TestReplayRecording(t *testing.T) {
	rec, err := recording.Open(checkoutRecording)
	if err != nil {
		t.Fatal(err)
	}
	placed := rec.Timeline(fleet.TimelineOptions{})
	lines := map[string]int{} // tracepoint → recorded line
	counts := map[string]int{}
	for _, p := range placed {
		lines[p.Tracepoint] = p.Line
		counts[p.Tracepoint]++
	}
	c := startSession(t)
	// 1 >> initialize, << initialize
	c.Send(t, "initialize", map[string]any{"adapterID": "riptrace", "linesStartAt1": true, "pathFormat": "path"})
	c.ExpectInitializeResponse(t)
	// 2 >> attach {recording}, << attach, << initialized
	c.Send(t, "attach", map[string]any{"type": "riptrace", "request": "attach", "name": t.Name(), "cwd": repoRoot, "consoleHits": "all",
		"recording": "scenario/recording/testdata/checkout.hits.jsonl"})
	c.ExpectAttachResponse(t)
	c.ExpectInitializedEvent(t)
	c.AwaitOutputEvent(t, "saying what is replayed", func(e *godap.OutputEvent) bool {
		return strings.Contains(e.Body.Output, "replaying "+checkoutRecording+": 12 of its 12 hits, of scenario checkout")
	})
	// << breakpoint (new), one per recorded tracepoint, at its local line
	ids := map[string]int{}
	for _, tp := range []string{"checkout", "price", "charge"} {
		file, _ := filepath.Abs(filepath.Join("..", "demo", map[string]string{"checkout": "gateway", "price": "orders", "charge": "payments"}[tp], "main.go"))
		e := c.AwaitBreakpointEvent(t, "for "+tp, func(b *godap.Breakpoint) bool {
			return strings.Contains(b.Message, "recorded tracepoint "+tp+":")
		})
		b := e.Body.Breakpoint
		if e.Body.Reason != "new" || !b.Verified || b.Source == nil || b.Source.Path != file || b.Line != lines[tp] || !strings.Contains(b.Message, "4 hits in checkout.hits.jsonl") {
			t.Errorf("%s: want a new verified breakpoint at %s:%d with 4 hits, got %s %+v %+v", tp, file, lines[tp], e.Body.Reason, b, b.Source)
		}
		ids[tp] = b.Id
	}
	// << output, a hit each, in the order they ran, at their local lines
	events := c.HitEvents(t, len(placed))
	for i, e := range events {
		h := hitOf(t, e)
		if h.Seq != placed[i].Seq || e.Body.Line != placed[i].Line || e.Body.Source == nil || !strings.HasSuffix(e.Body.Source.Path, "/demo/"+filepath.Base(filepath.Dir(placed[i].File))+"/main.go") {
			t.Errorf("hit event %d: #%d at %+v:%d, want #%d at line %d of %s", i, h.Seq, e.Body.Source, e.Body.Line, placed[i].Seq, placed[i].Line, placed[i].File)
		}
	}

	// 3 >> setBreakpoints on the checkout line and one without hits
	gateway, _ := filepath.Abs("../demo/gateway/main.go")
	got := setBreakpoints(t, c, gateway, godap.SourceBreakpoint{Line: lines["checkout"]}, godap.SourceBreakpoint{Line: 1})
	if !got[0].Verified || got[0].Id != ids["checkout"] {
		t.Errorf("the checkout line: want breakpoint %d verified, got %+v", ids["checkout"], got[0])
	}
	if got[1].Verified || !strings.Contains(got[1].Message, "checkout.hits.jsonl has no hit on this line") || !strings.Contains(got[1].Message, `attach without "recording" to trace it`) {
		t.Errorf("line 1: want a breakpoint not set, saying why and what to do, got %+v", got[1])
	}

	// 3b >> setFunctionBreakpoints: not set, saying why
	c.Send(t, "setFunctionBreakpoints", godap.SetFunctionBreakpointsArguments{Breakpoints: []godap.FunctionBreakpoint{{Name: "main.charge"}}})
	if fb := daptest.Expect[*godap.SetFunctionBreakpointsResponse](t, c).Body.Breakpoints; len(fb) != 1 || fb[0].Verified || !strings.Contains(fb[0].Message, "traces nothing: attach without \"recording\" to trace a function") {
		t.Errorf("a function breakpoint during a replay: want it not set, saying why, got %+v", fb)
	}

	// 4 >> riptrace/hits: each breakpoint with its recorded hits
	var view struct {
		Breakpoints []dap.BreakpointHits `json:"breakpoints"`
	}
	c.Send(t, dap.RequestHits, nil)
	c.ExpectCustomResponse(t, dap.RequestHits, &view)
	if len(view.Breakpoints) != 3 {
		t.Fatalf("the hits view lists %d breakpoints, want 3: %+v", len(view.Breakpoints), view.Breakpoints)
	}
	for _, b := range view.Breakpoints {
		if b.Count != 4 || len(b.Processes) != 1 {
			t.Errorf("breakpoint %d at %s:%d: %d hits in %d processes, want 4 in 1", b.ID, b.Path, b.Line, b.Count, len(b.Processes))
		}
	}

	// 5 >> evaluate "snapshot N", << stopped; threads lists its process
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: "snapshot " + strconv.Itoa(ids["charge"]), Context: "repl"})
	if r := c.ExpectEvaluateResponse(t); !strings.Contains(r.Body.Result, "opened hit #") {
		t.Errorf("snapshot: %q", r.Body.Result)
	}
	stopped := c.AwaitEvent(t, "stopped").(*godap.StoppedEvent)
	c.Send(t, "threads", nil)
	threads := c.ExpectThreadsResponse(t).Body.Threads
	found := false
	for _, th := range threads {
		if th.Id == stopped.Body.ThreadId && strings.Contains(th.Name, "payments @ ") && strings.Contains(th.Name, "recorded): snapshot of hit #") {
			found = true
		}
	}
	if len(threads) != 3 || !found {
		t.Errorf("threads: want the three recorded processes, the snapshot's named, got %+v", threads)
	}
	c.Send(t, "stackTrace", godap.StackTraceArguments{ThreadId: stopped.Body.ThreadId})
	if st := daptest.Expect[*godap.StackTraceResponse](t, c); len(st.Body.StackFrames) == 0 || st.Body.StackFrames[0].Line != lines["charge"] {
		t.Errorf("the snapshot's stack: want its top frame on line %d, got %+v", lines["charge"], st.Body.StackFrames)
	}

	// 6 >> evaluate "hosts": there is no fleet, and it says where to look
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: "hosts", Context: "repl"})
	c.ExpectErrorResponse(t, "evaluate", dap.ErrEvaluate)

	// 7 >> disconnect
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestReplayRecordingGroup: a replay names each hit's request by the
// group as a live session does: the recorded order's units here, which
// the gateway's and the orders service's hits captured and the payments
// service's did not.
func TestReplayRecordingGroup(t *testing.T) {
	c := startSession(t)
	// 1 >> initialize; 2 >> attach {recording, group}
	c.Send(t, "initialize", map[string]any{"adapterID": "riptrace", "linesStartAt1": true, "pathFormat": "path"})
	c.ExpectInitializeResponse(t)
	c.Send(t, "attach", map[string]any{"type": "riptrace", "request": "attach", "name": t.Name(), "cwd": repoRoot,
		"recording": "scenario/recording/testdata/checkout.hits.jsonl", "group": "units"})
	c.ExpectAttachResponse(t)
	c.ExpectInitializedEvent(t)
	// 3 >> riptrace/timeline, << the 12 recorded hits, each in its request
	var tl struct {
		Hits []dap.HitRow `json:"hits"`
	}
	c.Send(t, dap.RequestTimeline, nil)
	c.ExpectCustomResponse(t, dap.RequestTimeline, &tl)
	if len(tl.Hits) != 12 {
		t.Fatalf("the timeline has %d hits, want the 12 recorded", len(tl.Hits))
	}
	units := regexp.MustCompile(`\bunits=(\d+)`)
	grouped := 0
	for _, r := range tl.Hits {
		want := ""
		if m := units.FindStringSubmatch(r.Values); m != nil {
			want = m[1]
			grouped++
		}
		if r.Group != want {
			t.Errorf("hit #%d (%s): request %q, want %q", r.Seq, r.Values, r.Group, want)
		}
	}
	if grouped != 8 {
		t.Errorf("%d hits captured units, want 8 (the gateway's and the orders service's)", grouped)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestReplayRecordingRefused attaches to files that are no recording: the
// attach fails naming the attribute and what to do.
func TestReplayRecordingRefused(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"/nonexistent/run.hits.jsonl", "opening the recording"},
		{filepath.Join(repoRoot, "go.mod"), "not a recording of riptrace run"},
	} {
		c := startSession(t)
		c.Send(t, "initialize", map[string]any{"adapterID": "riptrace"})
		c.ExpectInitializeResponse(t)
		c.Send(t, "attach", map[string]any{"cwd": repoRoot, "recording": tc.file})
		r := c.ExpectErrorResponse(t, "attach", dap.ErrBadConfig)
		if !strings.Contains(r.Message, `"recording" cannot be replayed`) || !strings.Contains(r.Message, tc.want) {
			t.Errorf("%s: want the attribute named and %q, got %q", tc.file, tc.want, r.Message)
		}
	}
}
