package dap_test

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/dap/daptest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestHitsView is the transcript of what the editor shows besides a line
// per hit: by default the console shows the first hits of a breakpoint in
// full and then counts them; the hits view, the riptraceHits events and the
// timeline list the hits; a click (a lens, a hit) opens one as a snapshot
// titled with its number, host and time; a step in a snapshot says why it
// cannot; and every breakpoint message names the backend the configuration
// asked for and the one that serves it.
func TestHitsView(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("hitsview")
	f.startAgent(f.host, exe)
	p := f.startTarget(exe)
	c := f.session()

	// 1 >> initialize; 2 >> attach with the default console and the delve backend
	f.attach(c, map[string]any{"processes": []string{exe}, "consoleHits": "summary", "backend": "delve", "maxHitsPerSecond": 200})
	welcome := c.AwaitOutputEvent(t, "the welcome", func(e *godap.OutputEvent) bool { return strings.HasPrefix(e.Body.Output, "riptrace: attached") })
	for _, want := range []string{"delve backend", "then a count per second", "code lens", "snapshot BREAKPOINT", "Continue dismisses it"} {
		if !strings.Contains(welcome.Body.Output, want) {
			t.Errorf("welcome %q does not say %q", welcome.Body.Output, want)
		}
	}

	// 3 >> setBreakpoints, << setBreakpoints: pending for the delve backend
	process := agenttest.MarkerLine(t, loopSrc, "process")
	bps := setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: process})
	if !strings.Contains(bps[0].Message, "for the delve backend") {
		t.Errorf("pending message %q does not name the backend", bps[0].Message)
	}
	// << breakpoint: installed, served by delve
	c.AwaitBreakpointEvent(t, "installed via delve", func(bp *godap.Breakpoint) bool {
		return bp.Id == bps[0].Id && bp.Verified && strings.Contains(bp.Message, fmt.Sprintf("%s %s[%d] via delve", f.host, exe, p.Pid))
	})

	// << output ×3: the first hits in full; << output: then a count
	c.HitEvents(t, 3)
	count := c.AwaitOutputEvent(t, "a count of the hits not shown", func(e *godap.OutputEvent) bool {
		return strings.HasPrefix(e.Body.Output, fmt.Sprintf("breakpoint %d: ", bps[0].Id)) && strings.Contains(e.Body.Output, "more in the last second") && strings.Contains(e.Body.Output, "the RipTrace hits view lists the hits")
	})
	if len(count.Body.Data) != 0 || count.Body.Source == nil || count.Body.Source.Path != loopSrc || count.Body.Line != process {
		t.Errorf("count %+v, want no hit data and a link to %s:%d", count.Body, loopSrc, process)
	}
	// No hit in full while the breakpoint stays busy: counts only.
	c.Drop(func(m godap.Message) bool { _, ok := m.(*godap.OutputEvent); return ok })
	c.AwaitOutputEvent(t, "the next count", func(e *godap.OutputEvent) bool {
		if len(e.Body.Data) > 0 {
			t.Fatalf("a hit in full while the breakpoint is busy: %q", e.Body.Output)
		}
		return strings.Contains(e.Body.Output, "more in the last second")
	})

	// << riptraceHits: how many hits are new, and of which breakpoints
	var news dap.HitsEvent
	c.AwaitCustomEvent(t, dap.EventHits, &news, func() bool { return news.Count > 0 })
	if !slices.Equal(news.Breakpoints, []int{bps[0].Id}) {
		t.Errorf("event = %+v, want new hits of breakpoint %d", news, bps[0].Id)
	}

	// 4 >> riptrace/hits, << riptrace/hits: breakpoint → process → recent hits
	c.Send(t, dap.RequestHits, nil)
	var view struct {
		Breakpoints []dap.BreakpointHits `json:"breakpoints"`
	}
	c.ExpectCustomResponse(t, dap.RequestHits, &view)
	if len(view.Breakpoints) != 1 {
		t.Fatalf("hits view = %+v, want one breakpoint", view)
	}
	bh := view.Breakpoints[0]
	if bh.ID != bps[0].Id || bh.Path != loopSrc || bh.Line != process || bh.Backend != "delve" || bh.Count < 4 || len(bh.Processes) != 1 {
		t.Fatalf("breakpoint in the hits view = %+v", bh)
	}
	ph := bh.Processes[0]
	if ph.Host != f.host || ph.Pid != p.Pid || len(ph.Hits) == 0 || ph.Count < uint64(len(ph.Hits)) {
		t.Fatalf("process in the hits view = %+v", ph)
	}
	if r := ph.Hits[0]; r.Breakpoint != bps[0].Id || r.Pid != p.Pid || r.Path != loopSrc || r.Line != process || !strings.Contains(r.Values, "n=") || r.Order == 0 {
		t.Errorf("hit row = %+v, want breakpoint %d, pid %d at %s:%d with n", r, bps[0].Id, p.Pid, loopSrc, process)
	}
	for i := 1; i < len(ph.Hits); i++ {
		if ph.Hits[i].Order >= ph.Hits[i-1].Order {
			t.Fatalf("hits of a process not newest first: %+v", ph.Hits)
		}
	}

	// 5 >> riptrace/timeline, << riptrace/timeline: in execution order
	c.Send(t, dap.RequestTimeline, map[string]any{"limit": 50})
	var tl struct {
		Hits []dap.HitRow `json:"hits"`
	}
	c.ExpectCustomResponse(t, dap.RequestTimeline, &tl)
	if len(tl.Hits) < 4 || len(tl.Hits) > 50 {
		t.Fatalf("timeline has %d hits, want 4 to 50", len(tl.Hits))
	}
	for i := 1; i < len(tl.Hits); i++ {
		if tl.Hits[i].Order <= tl.Hits[i-1].Order {
			t.Fatalf("timeline out of order at %d: %+v", i, tl.Hits[i-1:i+1])
		}
	}

	// 6 >> next, with nothing open: nothing paused, nothing steps
	c.Send(t, "next", godap.NextArguments{ThreadId: 1})
	if e := c.ExpectErrorResponse(t, "next", dap.ErrUnsupported); !strings.Contains(e.Message, "never pauses") {
		t.Errorf("next without a snapshot: %q", e.Message)
	}

	// 7 >> riptrace/openHit at the lens's line, << riptrace/openHit, << stopped
	c.Send(t, dap.RequestOpenHit, map[string]any{"path": loopSrc, "line": process})
	var opened struct {
		Seq        uint64 `json:"seq"`
		Part       int    `json:"part"`
		Breakpoint int    `json:"breakpoint"`
		Title      string `json:"title"`
	}
	c.ExpectCustomResponse(t, dap.RequestOpenHit, &opened)
	// Under load the agent sends its backlog in batches: a hit in one is
	// numbered seq.part.
	wantTitle := fmt.Sprintf("hit #%s on %s at ", fleet.HitNumber(opened.Seq, opened.Part), f.host)
	if opened.Breakpoint != bps[0].Id || !strings.HasPrefix(opened.Title, wantTitle) {
		t.Errorf("openHit = %+v, want breakpoint %d titled %q…", opened, bps[0].Id, wantTitle)
	}
	stopped := c.AwaitEvent(t, "stopped").(*godap.StoppedEvent)
	if !strings.Contains(stopped.Body.Description, opened.Title) {
		t.Errorf("stopped description %q does not carry the title %q", stopped.Body.Description, opened.Title)
	}
	// 8 >> threads: the stopped thread's name says which hit it shows
	c.Send(t, "threads", nil)
	threads := c.ExpectThreadsResponse(t).Body.Threads
	if !slices.ContainsFunc(threads, func(th godap.Thread) bool {
		return th.Id == stopped.Body.ThreadId && strings.HasSuffix(th.Name, ": snapshot of "+opened.Title)
	}) {
		t.Errorf("threads = %+v, want thread %d named after %q", threads, stopped.Body.ThreadId, opened.Title)
	}
	// 9 >> stepIn, next, stepOut during the snapshot: each says why not
	for _, step := range []string{"stepIn", "next", "stepOut"} {
		c.Send(t, step, map[string]any{"threadId": stopped.Body.ThreadId})
		if e := c.ExpectErrorResponse(t, step, dap.ErrSnapshotStep); !strings.Contains(e.Message, "A snapshot cannot step") || !strings.Contains(e.Message, "Continue dismisses it") {
			t.Errorf("%s in a snapshot: %q", step, e.Message)
		}
	}
	// 10 >> openHit of an older hit by its number: a click in the hits view;
	// << continued (the open one is dismissed), << stopped (the new one)
	older := ph.Hits[len(ph.Hits)-1]
	c.Send(t, dap.RequestOpenHit, map[string]any{"seq": older.Seq, "part": older.Part})
	opened.Part = 0 // a hit alone in its message has none in the response
	c.ExpectCustomResponse(t, dap.RequestOpenHit, &opened)
	olderNumber := fleet.HitNumber(older.Seq, older.Part)
	if opened.Seq != older.Seq || opened.Part != older.Part {
		t.Errorf("openHit of hit #%s opened #%s", olderNumber, fleet.HitNumber(opened.Seq, opened.Part))
	}
	if e := c.AwaitEvent(t, "continued").(*godap.ContinuedEvent); e.Body.ThreadId != stopped.Body.ThreadId {
		t.Errorf("continued %+v, want thread %d's snapshot dismissed", e.Body, stopped.Body.ThreadId)
	}
	if e := c.AwaitEvent(t, "stopped").(*godap.StoppedEvent); !strings.Contains(e.Body.Description, "hit #"+olderNumber+" on") {
		t.Errorf("stopped %q after opening hit #%s", e.Body.Description, olderNumber)
	}
	// 11 >> openHit where no breakpoint is: the error says what to do
	c.Send(t, dap.RequestOpenHit, map[string]any{"path": loopSrc, "line": 1})
	if e := c.ExpectErrorResponse(t, dap.RequestOpenHit, dap.ErrNoSnapshot); !strings.Contains(e.Message, "set one there") {
		t.Errorf("openHit without a breakpoint: %q", e.Message)
	}

	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
	stillRunning(t, p)
}

// TestBackendAttribute: a backend the agents do not have is refused at
// attach, with the values that work.
func TestBackendAttribute(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	c := f.session()
	c.Send(t, "initialize", map[string]any{"adapterID": "riptrace"})
	c.ExpectInitializeResponse(t)
	c.Send(t, "attach", map[string]any{"nats": f.srv.ClientURL(), "cwd": repoRoot, "backend": "gdb"})
	e := c.ExpectErrorResponse(t, "attach", dap.ErrBadConfig)
	if want := `"backend" must be one of "auto", "ebpf" or "delve", got "gdb"`; !strings.Contains(e.Message, want) {
		t.Errorf("attach with backend gdb: %q, want it to say %s", e.Message, want)
	}
	c.Send(t, "attach", map[string]any{"nats": f.srv.ClientURL(), "cwd": repoRoot, "consoleHits": "some"})
	c.ExpectErrorResponse(t, "attach", dap.ErrBadConfig)
	c.Send(t, "disconnect", nil)
	daptest.Expect[*godap.DisconnectResponse](t, c)
}

// TestGroupAttribute: with "group", the breakpoints capture the group's
// expression and each row of the timeline names its request by that
// value: the loop target's item, items[n%3], as its argument n says.
func TestGroupAttribute(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("group")
	f.startAgent(f.host, exe)
	f.startTarget(exe)
	c := f.session()

	// 1 >> initialize; 2 >> attach, grouping by the item's id
	f.attach(c, map[string]any{"processes": []string{exe}, "backend": "delve", "consoleHits": "summary", "group": []string{"it.ID"}})
	// 3 >> setBreakpoints, << setBreakpoints
	process := agenttest.MarkerLine(t, loopSrc, "process")
	bps := setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: process})
	items := []string{"book", "lamp", "pen"}
	argN := regexp.MustCompile(`\bn=(\d+)`)
	// << output: the console's line of a hit names its request too
	line := c.AwaitOutputEvent(t, "a hit's console line", func(e *godap.OutputEvent) bool {
		return argN.MatchString(e.Body.Output)
	}).Body.Output
	n, _ := strconv.Atoi(argN.FindStringSubmatch(line)[1])
	if want := fmt.Sprintf("[request %s]", items[n%3]); !strings.Contains(line, want) {
		t.Errorf("console line %q of n=%d does not say %s", line, n, want)
	}
	// 4 >> riptrace/timeline, << riptrace/timeline, until it has a few
	// hits: each row names its request
	var tl struct {
		Hits []dap.HitRow `json:"hits"`
	}
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		c.Send(t, dap.RequestTimeline, map[string]any{"limit": 50})
		c.ExpectCustomResponse(t, dap.RequestTimeline, &tl)
		if len(tl.Hits) < 6 {
			return fmt.Errorf("timeline has %d hits, want at least 6", len(tl.Hits))
		}
		return nil
	})
	for _, r := range tl.Hits {
		m := argN.FindStringSubmatch(r.Values)
		if r.Breakpoint != bps[0].Id || m == nil {
			t.Fatalf("row %+v, want a hit of breakpoint %d with n", r, bps[0].Id)
		}
		n, _ := strconv.Atoi(m[1])
		if want := items[n%3]; r.Group != want || !strings.Contains(r.Values, fmt.Sprintf("it.ID=%q", want)) {
			t.Errorf("row of n=%d: group %q, values %q; want group %q, it.ID captured", n, r.Group, r.Values, want)
		}
	}

	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestHitsOfABatch: an agent with a backlog sends a tracepoint's hits
// several to a message (fleet.PackedHitBatch), and they share the message's seq.
// Each is still a row of its own in the hits view and the timeline, named
// seq.part, and a click on it opens that hit, not the batch's first.
func TestHitsOfABatch(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("batch")
	f.startAgent(f.host, exe)
	f.startTarget(exe)
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "backend": "delve"})
	process := agenttest.MarkerLine(t, loopSrc, "process")
	// One real hit, the model of the batch's.
	setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: process, HitCondition: "== 1"})
	real := hitOf(t, c.HitEvents(t, 1)[0])

	// The batch, as the agent would send it: three hits of its tracepoint
	// after the real one, told apart by an n the target never has.
	var hits [][]byte
	for i := range 3 {
		h := real
		h.Seq, h.Part = 0, 0
		h.Time += int64(i+1) * int64(time.Millisecond)
		h.Args = slices.Clone(real.Args)
		for j := range h.Args {
			if h.Args[j].Name == "n" {
				h.Args[j].Value = strconv.Itoa(-7000 - i)
			}
		}
		hits = append(hits, fleet.Encode(&h))
	}
	pub, err := f.c.NewHitPublisher(f.host, 10*time.Second, 16)
	if err != nil {
		t.Fatal(err)
	}
	// Packed, as this version's agent sends a batch.
	ack, err := pub.Publish(pub.PackedBatchMsg(real.Tracepoint, hits, "test-batch-"+f.host))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ack.Ok():
	case err := <-ack.Err():
		t.Fatalf("publishing the batch: %v", err)
	}

	// The hits view: the three rows, parts 0 to 2 of one seq, each with its n.
	var batch []dap.HitRow
	testsupport.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		c.Send(t, dap.RequestHits, nil)
		var view struct {
			Breakpoints []dap.BreakpointHits `json:"breakpoints"`
		}
		c.ExpectCustomResponse(t, dap.RequestHits, &view)
		batch = batch[:0]
		for _, b := range view.Breakpoints {
			for _, p := range b.Processes {
				for _, h := range p.Hits {
					if strings.Contains(h.Values, "n=-700") {
						batch = append(batch, h)
					}
				}
			}
		}
		if len(batch) != 3 {
			return fmt.Errorf("the hits view shows %d of the batch's 3 hits", len(batch))
		}
		return nil
	})
	slices.SortFunc(batch, func(a, b dap.HitRow) int { return a.Part - b.Part })
	for i, h := range batch {
		if h.Seq != batch[0].Seq || h.Part != i || !strings.Contains(h.Values, fmt.Sprintf("n=%d", -7000-i)) {
			t.Errorf("row %d of the batch = %+v, want seq %d part %d with n=%d", i, h, batch[0].Seq, i, -7000-i)
		}
	}

	// A click on the last: its title and its values are its own.
	last := batch[2]
	c.Send(t, dap.RequestOpenHit, map[string]any{"seq": last.Seq, "part": last.Part})
	var opened struct {
		Seq   uint64 `json:"seq"`
		Part  int    `json:"part"`
		Title string `json:"title"`
	}
	c.ExpectCustomResponse(t, dap.RequestOpenHit, &opened)
	number := fleet.HitNumber(last.Seq, 2)
	if opened.Seq != last.Seq || opened.Part != 2 || !strings.HasPrefix(opened.Title, "hit #"+number+" on ") {
		t.Errorf("openHit of hit #%s = %+v", number, opened)
	}
	stopped := c.AwaitEvent(t, "stopped").(*godap.StoppedEvent)
	c.Send(t, "stackTrace", godap.StackTraceArguments{ThreadId: stopped.Body.ThreadId})
	frames := daptest.Expect[*godap.StackTraceResponse](t, c).Body.StackFrames
	if len(frames) == 0 {
		t.Fatal("the snapshot has no frames")
	}
	c.Send(t, "scopes", godap.ScopesArguments{FrameId: frames[0].Id})
	var shown []string
	for _, s := range daptest.Expect[*godap.ScopesResponse](t, c).Body.Scopes {
		if s.VariablesReference == 0 {
			continue
		}
		c.Send(t, "variables", godap.VariablesArguments{VariablesReference: s.VariablesReference})
		for _, v := range daptest.Expect[*godap.VariablesResponse](t, c).Body.Variables {
			if v.Name == "n" {
				shown = append(shown, v.Value)
			}
		}
	}
	if !slices.Equal(shown, []string{"-7002"}) {
		t.Errorf("the snapshot of hit #%s shows n = %q, want the batch's last, -7002", number, shown)
	}

	// An unknown part of a known seq is named as the views name it.
	c.Send(t, dap.RequestOpenHit, map[string]any{"seq": last.Seq, "part": 7})
	if e := c.ExpectErrorResponse(t, dap.RequestOpenHit, dap.ErrNoSnapshot); !strings.Contains(e.Message, "hit #"+fleet.HitNumber(last.Seq, 7)+" ") {
		t.Errorf("openHit of a part the batch lacks: %q", e.Message)
	}
}
