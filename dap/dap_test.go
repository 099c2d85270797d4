package dap_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/dap/daptest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestTwoServices is the main transcript: one breakpoint fans out to two
// services, its hits arrive in stream order with values and link back to
// the local file, a line without code and a condition that does not parse
// are reported on their own breakpoints, and disconnect removes everything
// while the services run on.
func TestTwoServices(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	orders, payments := f.exe("orders"), f.exe("payments")
	f.startAgent(f.host, orders, payments)
	po, pp := f.startTarget(orders), f.startTarget(payments)
	c := f.session()

	// 1 >> initialize, << initialize; 2 >> attach, << attach, << initialized
	f.attach(c, map[string]any{"hosts": []string{f.host}, "processes": []string{orders, payments}, "maxHitsPerSecond": 1000})

	// 3 >> setBreakpoints (process line if n%3 == 0, a comment line, a bad condition), << setBreakpoints: all pending at once
	process := agenttest.MarkerLine(t, loopSrc, "process")
	nocode := agenttest.MarkerLine(t, loopSrc, "nocode")
	loop := agenttest.MarkerLine(t, loopSrc, "loop")
	bps := setBreakpoints(t, c, loopSrc,
		godap.SourceBreakpoint{Line: process, Condition: "n%3 == 0"},
		godap.SourceBreakpoint{Line: nocode},
		godap.SourceBreakpoint{Line: loop, Condition: "n =="},
	)
	for i, bp := range bps[:2] {
		if bp.Verified || bp.Id == 0 || !strings.HasPrefix(bp.Message, "pending") || bp.Source == nil || bp.Source.Path != loopSrc {
			t.Errorf("breakpoint %d = %+v, want pending with an id and the source", i, bp)
		}
	}
	if bps[2].Verified || !strings.Contains(bps[2].Message, "condition") {
		t.Errorf("breakpoint with a bad condition = %+v, want unverified naming the condition", bps[2])
	}

	// << breakpoint: verified, naming both processes
	ev := c.AwaitBreakpointEvent(t, "installed on both services", func(bp *godap.Breakpoint) bool {
		return bp.Id == bps[0].Id && bp.Verified && strings.HasPrefix(bp.Message, "installed on 2 of 2 processes")
	})
	for _, want := range []string{fmt.Sprintf("%s %s[%d]", f.host, orders, po.Pid), fmt.Sprintf("%s %s[%d]", f.host, payments, pp.Pid)} {
		if !strings.Contains(ev.Body.Breakpoint.Message, want) {
			t.Errorf("verified message %q does not name %s", ev.Body.Breakpoint.Message, want)
		}
	}
	// << breakpoint: the comment line is unverified with the agent's
	// reason, once no process is pending (being attached) any more
	ev = c.AwaitBreakpointEvent(t, "no code", func(bp *godap.Breakpoint) bool {
		return bp.Id == bps[1].Id && strings.Contains(bp.Message, "has no code") && !strings.Contains(bp.Message, ": pending")
	})
	if ev.Body.Breakpoint.Verified || !strings.HasPrefix(ev.Body.Breakpoint.Message, "not installed by the auto (eBPF, else Delve) backend: ") {
		t.Errorf("breakpoint on a comment = %+v, want unverified and not installed", ev.Body.Breakpoint)
	}

	// << progressStart … progressEnd: the fan-out as one progress bar
	start := c.AwaitEvent(t, "progressStart").(*godap.ProgressStartEvent)
	end := c.AwaitEvent(t, "progressEnd").(*godap.ProgressEndEvent)
	if end.Body.ProgressId != start.Body.ProgressId || end.Body.Message != "every breakpoint placed or refused" {
		t.Errorf("progress %+v ended with %+v, want every breakpoint settled", start.Body, end.Body)
	}

	// << output …: hits in the timeline's order, from both services, with
	// values; at least 12, and as many as it takes to see both.
	var lastOrder uint64
	pids := map[int]bool{}
	for i := 0; i < 12 || len(pids) < 2; i++ {
		if i == 1000 {
			t.Fatalf("1000 hits came from %v only, want both %d and %d", pids, po.Pid, pp.Pid)
		}
		e := c.HitEvents(t, 1)[0]
		h := hitOf(t, e)
		var placed fleet.Placed
		if err := json.Unmarshal(e.Body.Data, &placed); err != nil {
			t.Fatal(err)
		}
		if placed.Order <= lastOrder || placed.CoordinatedTime.IsZero() {
			t.Fatalf("hit #%d has order %d (coordinated time %v) after order %d: output events out of the timeline's order", h.Seq, placed.Order, placed.CoordinatedTime, lastOrder)
		}
		lastOrder = placed.Order
		pids[h.Pid] = true
		if e.Body.Source == nil || e.Body.Source.Path != loopSrc || e.Body.Line != process {
			t.Fatalf("output event links to %+v line %d, want %s:%d", e.Body.Source, e.Body.Line, loopSrc, process)
		}
		n := fleettest.Var(h.Args, "n")
		if n == nil {
			t.Fatalf("hit lacks argument n: %+v", h.Args)
		}
		if v, err := strconv.Atoi(n.Value); err != nil || v%3 != 0 {
			t.Fatalf("hit with n=%s passed the condition n%%3 == 0", n.Value)
		}
		want := fmt.Sprintf("%s %s[%d] g%d main.process:", f.host, h.Process.Exe, h.Pid, h.Goroutine)
		if !strings.HasPrefix(e.Body.Output, want) || !strings.Contains(e.Body.Output, " n="+n.Value) || !strings.Contains(e.Body.Output, " it=") {
			t.Fatalf("output %q, want it to start with %q and show it and n", e.Body.Output, want)
		}
	}
	if !pids[po.Pid] || !pids[pp.Pid] {
		t.Errorf("hits came from %v, want %d and %d", pids, po.Pid, pp.Pid)
	}

	// 4 >> threads, << threads: one per service
	c.Send(t, "threads", nil)
	threads := c.ExpectThreadsResponse(t).Body.Threads
	var names []string
	for _, th := range threads {
		names = append(names, th.Name)
	}
	for _, want := range []string{fmt.Sprintf("%s @ %s (pid %d", orders, f.host, po.Pid), fmt.Sprintf("%s @ %s (pid %d", payments, f.host, pp.Pid)} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, want) }) {
			t.Errorf("threads %q, want one named %s…", names, want)
		}
	}

	// 5 >> evaluate "hits 2" (repl), << evaluate
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: "hits 2", Context: "repl"})
	res := c.ExpectEvaluateResponse(t).Body.Result
	if lines := strings.Split(res, "\n"); len(lines) != 2 || !strings.Contains(res, "main.process") {
		t.Errorf("hits 2 = %q, want two hit lines", res)
	}
	// 6 >> evaluate "hosts", << evaluate
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: "hosts", Context: "repl"})
	if res := c.ExpectEvaluateResponse(t).Body.Result; !strings.Contains(res, f.host+": 2 of 2 Go processes selected") {
		t.Errorf("hosts = %q, want %s with its 2 processes", res, f.host)
	}

	// 7 >> disconnect, << disconnect: the fleet forgets the session's
	// tracepoints, agents detach, the services run on.
	if got := f.declared(); len(got) != 2 {
		t.Fatalf("declared tracepoints before disconnect = %v, want the session's 2", got)
	}
	c.Send(t, "disconnect", map[string]any{"terminateDebuggee": true})
	c.ExpectDisconnectResponse(t)
	if got := f.declared(); len(got) != 0 {
		t.Errorf("declared tracepoints after disconnect = %v, want none", got)
	}
	for _, p := range []*agenttest.Proc{po, pp} {
		testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			att, err := f.attached(f.host, p.Pid)
			if err == nil && att {
				err = fmt.Errorf("still attached to %d after disconnect", p.Pid)
			}
			return err
		})
		stillRunning(t, p)
	}
}

// TestLogpointAndReplace covers logpoint interpolation, hit conditions and
// replacing a file's breakpoints: the old tracepoint goes, the new one
// reports.
func TestLogpointAndReplace(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("logsvc")
	f.startAgent(f.host, exe)
	p := f.startTarget(exe)
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "maxHitsPerSecond": 1000})

	process := agenttest.MarkerLine(t, loopSrc, "process")
	loop := agenttest.MarkerLine(t, loopSrc, "loop")
	// 3 >> setBreakpoints (logpoint), << setBreakpoints
	bps := setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: process, LogMessage: "item {it.ID} n={n} {{literal}}"})
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool {
		return bp.Id == bps[0].Id && bp.Verified && regexp.MustCompile(fmt.Sprintf(`^installed on 1 of 1 processes \(%s %s\[%d\] via (ebpf|delve)\)$`, f.host, exe, p.Pid)).MatchString(bp.Message)
	})
	// << output: the rendered message, linked to the line
	re := regexp.MustCompile(`^item (book|lamp|pen) n=(\d+) \{literal\}\n$`)
	for _, e := range c.HitEvents(t, 5) {
		m := re.FindStringSubmatch(e.Body.Output)
		if m == nil {
			t.Fatalf("logpoint output %q, want it to match %s", e.Body.Output, re)
		}
		h := hitOf(t, e)
		if n := fleettest.Var(h.Args, "n"); n == nil || n.Value != m[2] {
			t.Fatalf("logpoint said n=%s, hit's argument is %+v", m[2], n)
		}
		if e.Body.Line != process {
			t.Fatalf("output event line %d, want %d", e.Body.Line, process)
		}
	}

	// 4 >> setBreakpoints (the loop line instead), << setBreakpoints
	old := f.declared()
	bps2 := setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: loop})
	if bps2[0].Id == bps[0].Id {
		t.Fatalf("a new breakpoint reused id %d", bps[0].Id)
	}
	if now := f.declared(); len(now) != 1 || slices.Equal(now, old) {
		t.Fatalf("declared after replacing = %v (before %v), want one new tracepoint", now, old)
	}
	c.AwaitBreakpointEvent(t, "loop line installed", func(bp *godap.Breakpoint) bool { return bp.Id == bps2[0].Id && bp.Verified })
	// Hits of the removed logpoint may still be in flight; the next ones
	// come from the loop line.
	c.AwaitOutputEvent(t, "from the loop line", func(e *godap.OutputEvent) bool {
		return len(e.Body.Data) > 0 && e.Body.Line == loop && strings.Contains(e.Body.Output, "main.main:")
	})

	// 5 >> setBreakpoints (hit condition "% 2"), << setBreakpoints: every
	// other execution of the line is reported, so n goes up by 2 from one
	// hit to the next (the target calls process once per n).
	bps3 := setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: process, HitCondition: "% 2"})
	m := regexp.MustCompile(`declared as (\S+) at`).FindStringSubmatch(bps3[0].Message)
	if m == nil {
		t.Fatalf("pending message %q does not name the tracepoint", bps3[0].Message)
	}
	var ns []int
	for len(ns) < 4 {
		e := c.AwaitOutputEvent(t, "from the hit-conditional breakpoint", func(e *godap.OutputEvent) bool {
			return len(e.Body.Data) > 0 && strings.Contains(string(e.Body.Data), `"tracepoint":"`+m[1]+`"`)
		})
		n, err := strconv.Atoi(fleettest.Var(hitOf(t, e).Args, "n").Value)
		if err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	for i := 1; i < len(ns); i++ {
		if ns[i]-ns[i-1] != 2 {
			t.Fatalf("hits of a %% 2 hit condition had n = %v, want steps of 2", ns)
		}
	}

	// 6 >> setBreakpoints (none), << setBreakpoints: nothing is declared
	setBreakpoints(t, c, loopSrc)
	if now := f.declared(); len(now) != 0 {
		t.Fatalf("declared after clearing the file = %v, want none", now)
	}
	// 7 >> terminate, << terminate, << terminated; 8 >> disconnect
	c.Send(t, "terminate", nil)
	c.ExpectTerminateResponse(t)
	c.ExpectTerminatedEvent(t)
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
	stillRunning(t, p)
}

// TestPersist: a session that persists leaves its tracepoints declared; one
// that does not removes them, also when its client just goes away.
func TestPersist(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	line := agenttest.MarkerLine(t, loopSrc, "process")
	for _, tc := range []struct {
		name    string
		persist bool
		hangUp  bool
		want    int
	}{{"persist", true, false, 1}, {"session", false, false, 0}, {"hang up", false, true, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, id := range f.declared() {
				f.c.Remove(context.Background(), id)
			}
			c := f.session()
			f.attach(c, map[string]any{"persist": tc.persist})
			// 3 >> setBreakpoints, << setBreakpoints: pending, as no agent runs
			bps := setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: line})
			if bps[0].Verified || !strings.HasPrefix(bps[0].Message, "pending") {
				t.Fatalf("breakpoint = %+v, want pending", bps[0])
			}
			specs, err := f.c.Tracepoints(context.Background())
			if err != nil || len(specs) != 1 {
				t.Fatalf("declared = %+v, %v; want the session's one", specs, err)
			}
			if s := specs[0]; s.Location.Module != "github.com/riptrace/riptrace" || s.Location.Path != "agent/testdata/targets/loop/main.go" || s.Location.Line != line || s.Limits.ExpiresAt.IsZero() != tc.persist {
				t.Errorf("spec = %+v, want module + path in module, and an expiry unless persisting", s)
			}
			if tc.hangUp {
				c.Close()
				testsupport.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
					if got := f.declared(); len(got) != tc.want {
						return fmt.Errorf("declared after the client hung up = %v", got)
					}
					return nil
				})
				return
			}
			// 4 >> disconnect, << disconnect
			c.Send(t, "disconnect", nil)
			c.ExpectDisconnectResponse(t)
			if got := f.declared(); len(got) != tc.want {
				t.Errorf("declared after disconnect = %v, want %d", got, tc.want)
			}
		})
	}
}

// TestRequestErrors: invalid configurations name the attribute and the fix;
// requests out of order or unsupported get stable error ids; none ends the
// session.
func TestRequestErrors(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	c := f.session()
	// 1 >> setBreakpoints before anything, << error
	c.Send(t, "setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: loopSrc}, Breakpoints: []godap.SourceBreakpoint{{Line: 3}}})
	c.ExpectErrorResponse(t, "setBreakpoints", dap.ErrNotAttached)
	// 2 >> launch, << error: nothing is launched
	c.Send(t, "launch", map[string]any{})
	c.ExpectErrorResponse(t, "launch", dap.ErrUnsupported)
	// 3 >> stepIn, << error
	c.Send(t, "stepIn", map[string]any{"threadId": 1})
	c.ExpectErrorResponse(t, "stepIn", dap.ErrUnsupported)
	// 4 >> pause, << error: RipTrace never pauses
	c.Send(t, "pause", map[string]any{"threadId": 1})
	if er := c.ExpectErrorResponse(t, "pause", dap.ErrUnsupported); !strings.Contains(er.Message, "never pauses") {
		t.Errorf("pause refused with %q", er.Message)
	}
	// 5 >> threads before attach, << threads: none
	c.Send(t, "threads", nil)
	if th := c.ExpectThreadsResponse(t).Body.Threads; th == nil || len(th) != 0 {
		t.Errorf("threads before attach = %#v, want an empty list", th)
	}
	// 6 >> evaluate help, << evaluate
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: "help", Context: "repl"})
	if res := c.ExpectEvaluateResponse(t).Body.Result; !strings.Contains(res, "hits [N]") {
		t.Errorf("help = %q", res)
	}
	// 7 >> evaluate in a watch, << error
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: "x+1", Context: "watch"})
	c.ExpectErrorResponse(t, "evaluate", dap.ErrEvaluate)

	for _, tc := range []struct {
		args       map[string]any
		id         int
		attr, says string
	}{
		{map[string]any{"hosts": 3}, dap.ErrBadConfig, `"hosts"`, `must be a list, for example ["orders-*"]`},
		{map[string]any{"hosts": []string{""}}, dap.ErrBadConfig, `"hosts"`, "empty glob"},
		{map[string]any{"hosts": "${command:riptrace.pickHosts}"}, dap.ErrBadConfig, `"hosts"`, "unexpanded"},
		{map[string]any{"processes": map[string]any{}}, dap.ErrBadConfig, `"processes"`, "must be a list"},
		{map[string]any{"nats": "localhost"}, dap.ErrBadConfig, `"nats"`, "NATS URL"},
		{map[string]any{"capture": map[string]any{"local": true}}, dap.ErrBadConfig, `"capture"`, "unknown field"},
		{map[string]any{"capture": map[string]any{"exprs": []string{"a +"}}}, dap.ErrBadConfig, `"capture"`, "not a Go expression"},
		{map[string]any{"capture": map[string]any{"stackDepth": 1_000_000_000}}, dap.ErrBadConfig, `"capture"`, "capture.stackDepth is 1000000000, more than the 100 an agent allows. Give at most 100"},
		{map[string]any{"capture": map[string]any{"exprs": make([]string, fleet.MaxExprs+1)}}, dap.ErrBadConfig, `"capture"`, "more than the 16 an agent allows"},
		{map[string]any{"processes": []string{"orders-[ab]"}}, dap.ErrBadConfig, `"processes"`, "RipTrace globs do not have"},
		{map[string]any{"group": map[string]any{}}, dap.ErrBadConfig, `"group"`, `must be a list, for example ["req.OrderID"]`},
		{map[string]any{"group": []string{""}}, dap.ErrBadConfig, `"group"`, "empty name"},
		{map[string]any{"group": "req.(", "capture": map[string]any{"exprs": []string{"x"}}}, dap.ErrBadConfig, `"group"`, "not a Go expression"},
		{map[string]any{"hosts": []string{"orders.example.com"}}, dap.ErrBadConfig, `"hosts"`, "can match no host"},
		{map[string]any{"maxHitsPerSecond": 0}, dap.ErrBadConfig, `"maxHitsPerSecond"`, "positive"},
		{map[string]any{"persist": "yes"}, dap.ErrBadConfig, `"persist"`, "true or false"},
		{map[string]any{"substitutePath": []map[string]string{{"from": "/a"}}}, dap.ErrBadConfig, `"substitutePath"`, "empty"},
		{map[string]any{"creds": "/nonexistent/user.creds"}, dap.ErrBadConfig, `"creds"`, "existing file"},
		{map[string]any{"inboxPrefix": "_INBOX.>"}, dap.ErrBadConfig, `"inboxPrefix"`, "wildcard"},
		{map[string]any{"tls": map[string]any{"cert": "/x"}}, dap.ErrBadConfig, `"tls.cert"`, "together"},
		{map[string]any{"cwd": "/nonexistent/checkout"}, dap.ErrBadConfig, `"cwd"`, "root of the local checkout"},
		{map[string]any{"nats": "nats://127.0.0.1:1"}, dap.ErrConnecting, `"nats"`, "riptrace server"},
	} {
		// >> attach, << error naming the attribute
		c.Send(t, "attach", tc.args)
		er := c.ExpectErrorResponse(t, "attach", tc.id)
		if !strings.Contains(er.Message, tc.attr) || !strings.Contains(er.Message, tc.says) {
			t.Errorf("attach %v: %q, want it to name %s and say %q", tc.args, er.Message, tc.attr, tc.says)
		}
	}
	// The session still works: attach for real, then a second attach fails.
	c.Send(t, "attach", map[string]any{"nats": f.srv.ClientURL()})
	c.ExpectAttachResponse(t)
	c.ExpectInitializedEvent(t)
	c.Send(t, "attach", map[string]any{"nats": f.srv.ClientURL()})
	c.ExpectErrorResponse(t, "attach", dap.ErrAttachedTwice)
	c.Send(t, "configurationDone", nil)
	c.ExpectConfigurationDoneResponse(t)
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// lineOf returns the 1-based line of file that contains text, once.
func lineOf(t testing.TB, file, text string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	found := 0
	for i, l := range lines {
		if strings.Contains(l, text) {
			if found != 0 {
				t.Fatalf("%s: %q on lines %d and %d", file, text, found, i+1)
			}
			found = i + 1
		}
	}
	if found == 0 {
		t.Fatalf("%s: no line contains %q", file, text)
	}
	return found
}

// TestFunctionBreakpoints: a function name is found in the checkout and
// traced at its first statement, with its condition; names that match no
// function or several are unverified with the reason, on their own.
func TestFunctionBreakpoints(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("funcsvc")
	f.startAgent(f.host, exe)
	p := f.startTarget(exe)
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "maxHitsPerSecond": 1000})

	entry := lineOf(t, loopSrc, "units := it.Count")
	// 3 >> setFunctionBreakpoints, << setFunctionBreakpoints
	c.Send(t, "setFunctionBreakpoints", godap.SetFunctionBreakpointsArguments{Breakpoints: []godap.FunctionBreakpoint{
		{Name: "main.process", Condition: "n%2 == 1"},
		{Name: "main.noSuchFunction"},
		{Name: "main.main"},
	}})
	bps := daptest.Expect[*godap.SetFunctionBreakpointsResponse](t, c).Body.Breakpoints
	if len(bps) != 3 {
		t.Fatalf("got %d breakpoints for 3", len(bps))
	}
	if b := bps[0]; b.Verified || b.Source == nil || b.Source.Path != loopSrc || b.Line != entry || !strings.HasPrefix(b.Message, "pending") {
		t.Errorf("main.process = %+v, want pending at %s:%d", b, loopSrc, entry)
	}
	if b := bps[1]; b.Verified || !strings.Contains(b.Message, "no function main.noSuchFunction") {
		t.Errorf("main.noSuchFunction = %+v, want unverified: no such function", b)
	}
	if b := bps[2]; b.Verified || !strings.Contains(b.Message, "qualify it with its package path") {
		t.Errorf("main.main = %+v, want unverified: ambiguous", b)
	}
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool {
		return bp.Id == bps[0].Id && bp.Verified && strings.Contains(bp.Message, fmt.Sprintf("%s[%d]", exe, p.Pid))
	})
	// << output × 4: at the function's entry, only odd n
	for _, e := range c.HitEvents(t, 4) {
		h := hitOf(t, e)
		n := fleettest.Var(h.Args, "n")
		if e.Body.Line != entry || h.Function != "main.process" || n == nil {
			t.Fatalf("hit at line %d in %s with args %+v, want line %d in main.process with n", e.Body.Line, h.Function, h.Args, entry)
		}
		if v, _ := strconv.Atoi(n.Value); v%2 != 1 {
			t.Fatalf("hit with n=%s passed the condition n%%2 == 1", n.Value)
		}
	}
	// 4 >> setFunctionBreakpoints (none), << setFunctionBreakpoints
	c.Send(t, "setFunctionBreakpoints", godap.SetFunctionBreakpointsArguments{Breakpoints: []godap.FunctionBreakpoint{}})
	daptest.Expect[*godap.SetFunctionBreakpointsResponse](t, c)
	if got := f.declared(); len(got) != 0 {
		t.Errorf("declared after clearing function breakpoints = %v, want none", got)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestThreadEvents: processes that start and stop on a selected host show
// up as thread events, and in threads under their names.
func TestThreadEvents(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("threadsvc")
	f.startAgent(f.host, exe)
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}})

	p := f.startTarget(exe)
	// << thread started
	started := c.AwaitEvent(t, "thread").(*godap.ThreadEvent)
	if started.Body.Reason != "started" {
		t.Fatalf("first thread event = %+v, want started", started.Body)
	}
	// 3 >> threads, << threads
	c.Send(t, "threads", nil)
	threads := c.ExpectThreadsResponse(t).Body.Threads
	want := godap.Thread{Id: started.Body.ThreadId, Name: fmt.Sprintf("%s @ %s (pid %d", exe, f.host, p.Pid)}
	if len(threads) != 1 || threads[0].Id != want.Id || !strings.HasPrefix(threads[0].Name, want.Name) {
		t.Fatalf("threads = %+v, want %+v…", threads, want)
	}
	// << thread exited, once the process is gone
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	exited := c.AwaitEvent(t, "thread").(*godap.ThreadEvent)
	if exited.Body.Reason != "exited" || exited.Body.ThreadId != started.Body.ThreadId {
		t.Fatalf("thread event after the process stopped = %+v, want thread %d exited", exited.Body, started.Body.ThreadId)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestSnapshots: with "snapshots": true a hit opens as a stopped event
// whose captured stack, scopes and values can be browsed; continue
// dismisses it and the next hit opens the next; the REPL opens the latest
// hit of a breakpoint on demand. The process never stops.
func TestSnapshots(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("snapsvc")
	f.startAgent(f.host, exe)
	p := f.startTarget(exe)
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "snapshots": true})

	process := agenttest.MarkerLine(t, loopSrc, "process")
	// 3 >> setBreakpoints, << setBreakpoints
	bps := setBreakpoints(t, c, loopSrc, godap.SourceBreakpoint{Line: process})
	// << stopped: a snapshot, on the process's thread
	stopped := c.AwaitEvent(t, "stopped").(*godap.StoppedEvent)
	if !strings.Contains(stopped.Body.Description, "never paused") || stopped.Body.AllThreadsStopped || len(stopped.Body.HitBreakpointIds) != 1 || stopped.Body.HitBreakpointIds[0] != bps[0].Id {
		t.Errorf("stopped event = %+v, want a snapshot of breakpoint %d that says the process never paused", stopped.Body, bps[0].Id)
	}
	// 4 >> threads, << threads: the stopped thread is the process
	c.Send(t, "threads", nil)
	threads := c.ExpectThreadsResponse(t).Body.Threads
	if !slices.ContainsFunc(threads, func(th godap.Thread) bool {
		return th.Id == stopped.Body.ThreadId && strings.HasPrefix(th.Name, fmt.Sprintf("%s @ %s (pid %d", exe, f.host, p.Pid))
	}) {
		t.Errorf("threads = %+v, want thread %d for pid %d", threads, stopped.Body.ThreadId, p.Pid)
	}
	// 5 >> stackTrace, << stackTrace: the captured stack, linked to the checkout
	c.Send(t, "stackTrace", godap.StackTraceArguments{ThreadId: stopped.Body.ThreadId})
	frames := daptest.Expect[*godap.StackTraceResponse](t, c).Body.StackFrames
	if len(frames) < 2 || frames[0].Name != "main.process" || frames[0].Line != process || frames[0].Source == nil || frames[0].Source.Path != loopSrc || frames[1].Name != "main.main" {
		t.Fatalf("stack = %+v, want main.process at %s:%d called by main.main", frames, loopSrc, process)
	}
	// 6 >> scopes, << scopes
	c.Send(t, "scopes", godap.ScopesArguments{FrameId: frames[0].Id})
	scopes := daptest.Expect[*godap.ScopesResponse](t, c).Body.Scopes
	if len(scopes) < 3 || !strings.HasPrefix(scopes[0].Name, "Snapshot of hit #") || scopes[0].VariablesReference != 0 || scopes[1].Name != "Arguments" || scopes[2].Name != "Locals" {
		t.Fatalf("scopes = %+v, want the snapshot's title, Arguments and Locals", scopes)
	}
	// 7 >> variables (Arguments), << variables: it and n
	c.Send(t, "variables", godap.VariablesArguments{VariablesReference: scopes[1].VariablesReference})
	args := daptest.Expect[*godap.VariablesResponse](t, c).Body.Variables
	var it *godap.Variable
	for i := range args {
		if args[i].Name == "it" {
			it = &args[i]
		}
	}
	if it == nil || it.VariablesReference == 0 {
		t.Fatalf("arguments = %+v, want it, with children", args)
	}
	// 8 >> variables (it), << variables: followed through the pointer
	c.Send(t, "variables", godap.VariablesArguments{VariablesReference: it.VariablesReference})
	fields := daptest.Expect[*godap.VariablesResponse](t, c).Body.Variables
	if !slices.ContainsFunc(fields, func(v godap.Variable) bool {
		return v.Name == "ID" && strings.Contains(`"book" "lamp" "pen"`, v.Value)
	}) {
		t.Fatalf("it's fields = %+v, want ID", fields)
	}
	// 9 >> continue, << continue; << stopped: the next hit opens the next snapshot
	c.Send(t, "continue", godap.ContinueArguments{ThreadId: stopped.Body.ThreadId})
	daptest.Expect[*godap.ContinueResponse](t, c)
	c.Send(t, "variables", godap.VariablesArguments{VariablesReference: it.VariablesReference})
	c.ExpectErrorResponse(t, "variables", dap.ErrNoSnapshot)
	next := c.AwaitEvent(t, "stopped").(*godap.StoppedEvent)
	if next.Body.Description == stopped.Body.Description {
		t.Errorf("the next snapshot shows the same hit: %q", next.Body.Description)
	}
	// 10 >> evaluate "snapshot BP", << evaluate, << stopped
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: fmt.Sprintf("snapshot %d", bps[0].Id), Context: "repl"})
	if res := c.ExpectEvaluateResponse(t).Body.Result; !strings.Contains(res, "as a snapshot") {
		t.Errorf("snapshot = %q", res)
	}
	c.AwaitEvent(t, "stopped")
	c.Send(t, "evaluate", godap.EvaluateArguments{Expression: "snapshot 99", Context: "repl"})
	c.ExpectErrorResponse(t, "evaluate", dap.ErrEvaluate)

	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
	stillRunning(t, p)
}

// TestListener: --listen serves one independent session per connection.
func TestListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dap.NewServer(dap.Options{}).ServeListener(ctx, ln) }()
	var clients []*daptest.Client
	for range 2 {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		clients = append(clients, daptest.NewClient(conn, conn))
	}
	for _, c := range clients {
		// 1 >> initialize, << initialize
		c.Send(t, "initialize", map[string]any{"adapterID": "riptrace"})
		c.ExpectInitializeResponse(t)
	}
	// 2 >> disconnect on one; the other session goes on.
	clients[0].Send(t, "disconnect", nil)
	clients[0].ExpectDisconnectResponse(t)
	clients[1].Send(t, "threads", nil)
	clients[1].ExpectThreadsResponse(t)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return within 10s of its context ending")
	}
}

// TestSubstitutePath: with the checkout somewhere else than the build,
// substitutePath maps breakpoints to the processes' paths and hits back to
// the checkout.
func TestSubstitutePath(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	exe := f.exe("subsvc")
	f.startAgent(f.host, exe)
	f.startTarget(exe)
	// The "checkout": a copy of the target's source outside any module.
	local := t.TempDir()
	src, err := os.ReadFile(loopSrc)
	if err != nil {
		t.Fatal(err)
	}
	localSrc := filepath.Join(local, "main.go")
	if err := os.WriteFile(localSrc, src, 0o644); err != nil {
		t.Fatal(err)
	}
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "cwd": local, "substitutePath": []map[string]string{{"from": local, "to": filepath.Dir(loopSrc)}}})

	line := agenttest.MarkerLine(t, localSrc, "process")
	bps := setBreakpoints(t, c, localSrc, godap.SourceBreakpoint{Line: line})
	if !strings.Contains(bps[0].Message, loopSrc) {
		t.Errorf("pending breakpoint %q, want it declared at the substituted path %s", bps[0].Message, loopSrc)
	}
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool { return bp.Id == bps[0].Id && bp.Verified })
	e := c.HitEvents(t, 1)[0]
	if h := hitOf(t, e); h.File != loopSrc || e.Body.Source == nil || e.Body.Source.Path != localSrc || e.Body.Line != line {
		t.Fatalf("hit in %s shows at %+v:%d, want %s:%d", h.File, e.Body.Source, e.Body.Line, localSrc, line)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestInboxPrefix: a server that gives the user an inbox prefix of its own
// refuses an attach without it, saying which to set, and takes one with it.
func TestInboxPrefix(t *testing.T) {
	t.Parallel()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "alice", Password: "s3cret", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{fleet.UserInboxPrefix("alice") + ".>"}},
		}}}}
	s := runNATS(t, opts)
	args := map[string]any{"nats": fmt.Sprintf("nats://%s", s.Addr()), "user": "alice", "password": "s3cret"}
	c := startSession(t)
	// 1 >> attach without the prefix, << error naming it
	c.Send(t, "attach", args)
	if er := c.ExpectErrorResponse(t, "attach", dap.ErrConnecting); !strings.Contains(er.Message, "run with --inbox-prefix _INBOX_alice") {
		t.Errorf("attach without the inbox prefix: %q, want it to name the prefix", er.Message)
	}
	// 2 >> attach with it, << attach
	args["inboxPrefix"] = "_INBOX_alice"
	c.Send(t, "attach", args)
	c.ExpectAttachResponse(t)
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// runNATS runs a nats-server with opts until the test ends.
func runNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start within 10s")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestCredentials: user/password, token and an nkey seed file reach a
// NATS server that asks for them; without them attach fails and says why.
func TestCredentials(t *testing.T) {
	t.Parallel()
	pub, seedFile := fleettest.NkeyUser(t)
	for _, tc := range []struct {
		name  string
		opts  func(*server.Options)
		creds map[string]any
	}{
		{"user", func(o *server.Options) { o.Username, o.Password = "alice", "s3cret" }, map[string]any{"user": "alice", "password": "s3cret"}},
		{"token", func(o *server.Options) { o.Authorization = "t0ken" }, map[string]any{"token": "t0ken"}},
		{"nkey", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} }, map[string]any{"nkey": seedFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
			tc.opts(opts)
			s := runNATS(t, opts)
			url := fmt.Sprintf("nats://%s", s.Addr())
			c := startSession(t)
			// 1 >> attach without credentials, << error
			c.Send(t, "attach", map[string]any{"nats": url})
			if er := c.ExpectErrorResponse(t, "attach", dap.ErrConnecting); !strings.Contains(strings.ToLower(er.Message), "authorization") {
				t.Errorf("attach without credentials: %q, want it to say authorization failed", er.Message)
			}
			// 2 >> attach with them, << attach
			args := map[string]any{"nats": url}
			for k, v := range tc.creds {
				args[k] = v
			}
			c.Send(t, "attach", args)
			c.ExpectAttachResponse(t)
			c.Send(t, "disconnect", nil)
			c.ExpectDisconnectResponse(t)
		})
	}
}
