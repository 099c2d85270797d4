package dap_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/source/sourcetest"
)

// TestRevisionMapping: the fleet runs commit A while the checkout is at B,
// which has two more lines above the traced one. The breakpoint set on the
// checkout's line traces A's line, and hits show at the checkout's line.
func TestRevisionMapping(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	repo, bin, _ := sourcetest.MovedLine(t, agenttest.BuildStamped)
	localSrc := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, localSrc, "work")
	remoteLine := localLine - sourcetest.MovedBy // commit A's

	exe := f.exe("revs")
	agenttest.Start(t, agenttest.Alias(t, bin, exe)) // before the agent: cleanups detach first
	f.startAgent(f.host, exe)
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "cwd": repo})

	bps := setBreakpoints(t, c, localSrc, godap.SourceBreakpoint{Line: localLine})
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool { return bp.Id == bps[0].Id && bp.Verified })
	e := c.HitEvents(t, 1)[0]
	h := hitOf(t, e)
	if h.Line != remoteLine {
		t.Errorf("the process hit line %d, want commit A's line %d", h.Line, remoteLine)
	}
	if e.Body.Source == nil || e.Body.Source.Path != localSrc || e.Body.Line != localLine {
		t.Errorf("the hit shows at %+v:%d, want the checkout's %s:%d", e.Body.Source, e.Body.Line, localSrc, localLine)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// fourLines is a file with four lines to set breakpoints on.
const fourLines = `package main

func main() {
	a := 1 //@trace(a)
	b := a //@trace(b)
	c := b //@trace(c)
	_ = c  //@trace(d)
}
`

// TestBreakpointsAskHostsOnce: a setBreakpoints of four lines in a git
// checkout asks the fleet which revisions run once for all of them, not
// once per line, and from the session's host watch: the agent, whose
// processes did not change since the thread watcher asked at attach, is not
// asked again.
func TestBreakpointsAskHostsOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	repo := sourcetest.Init(t)
	sourcetest.Commit(t, repo, "A", map[string]string{"go.mod": "module example.com/four\n\ngo 1.26\n", "main.go": fourLines})
	src := filepath.Join(repo, "main.go")
	f.startAgent(f.host, f.exe("none"))
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		hosts, err := f.c.Hosts(context.Background())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == f.host && !h.Gone {
				return nil
			}
		}
		return fmt.Errorf("host %s not listed: %+v", f.host, hosts)
	})
	// A connection of its own sees every profile.get sent to the agent.
	nc, err := nats.Connect(f.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	asks, err := nc.SubscribeSync(fleet.NewSubjects(fleet.DefaultPrefix).ProfileGet(f.host))
	if err != nil {
		t.Fatal(err)
	}
	// The server has the subscription once the flush's PONG is back: a
	// request the session sends from its own connection after this is
	// seen.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	asked := func() int {
		t.Helper()
		// Messages sent before the flush's PONG are queued on asks when
		// Flush returns.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		n, _, err := asks.Pending()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The thread watcher looks at the fleet once at attach, then not for
	// an hour.
	c := startSessionOptions(t, dap.Options{ThreadsEvery: time.Hour})
	f.attach(c, map[string]any{"cwd": repo})
	var before int
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if before = asked(); before == 0 {
			return fmt.Errorf("no profile.get request after attach, want the thread watcher's")
		}
		return nil
	})
	// 3 >> setBreakpoints with four lines, << four breakpoints
	var bps []godap.SourceBreakpoint
	for _, m := range []string{"a", "b", "c", "d"} {
		bps = append(bps, godap.SourceBreakpoint{Line: agenttest.MarkerLine(t, src, m)})
	}
	setBreakpoints(t, c, src, bps...)
	if n := asked() - before; n != 0 {
		t.Errorf("setBreakpoints of %d lines sent %d profile.get requests to the agent, want none: the profile the thread watcher asked for is current, its processes unchanged", len(bps), n)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestRevisionMappingFollows sets the breakpoint before any agent runs, so
// that no revision is known when it is declared: once the agent reports a
// process of commit A, the session maps the line into A and declares it
// again, and the hit comes from A's line, shown at the checkout's.
func TestRevisionMappingFollows(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	repo, bin, _ := sourcetest.MovedLine(t, agenttest.BuildStamped)
	localSrc := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, localSrc, "work")
	remoteLine := localLine - sourcetest.MovedBy // commit A's

	exe := f.exe("follows")
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "cwd": repo})
	bps := setBreakpoints(t, c, localSrc, godap.SourceBreakpoint{Line: localLine})

	agenttest.Start(t, agenttest.Alias(t, bin, exe)) // before the agent: cleanups detach first
	f.startAgent(f.host, exe)
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool { return bp.Id == bps[0].Id && bp.Verified })
	e := c.HitEvents(t, 1)[0]
	if h := hitOf(t, e); h.Line != remoteLine {
		t.Errorf("the process hit line %d, want commit A's line %d", h.Line, remoteLine)
	}
	if e.Body.Source == nil || e.Body.Source.Path != localSrc || e.Body.Line != localLine {
		t.Errorf("the hit shows at %+v:%d, want the checkout's %s:%d", e.Body.Source, e.Body.Line, localSrc, localLine)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}

// TestRevisionWithoutVCS: the fleet runs two builds without vcs.revision
// while the checkout is at B. The one built on commit A is found by its
// debug info: the breakpoint traces A's line and the hit shows at the
// checkout's. The one built from uncommitted code is refused on the
// breakpoint with the reason, until the "revision" attribute names the
// commit it was built on.
func TestRevisionWithoutVCS(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	repo, bin, _ := sourcetest.MovedLine(t, agenttest.BuildUnstamped)
	localSrc := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, localSrc, "work")
	remoteLine := localLine - sourcetest.MovedBy // commit A's
	// Built on B with a function added below the traced line, never
	// committed.
	text, err := os.ReadFile(localSrc)
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.Write(t, repo, "main.go", string(text)+"\n//go:noinline\nfunc extra() int { return 7 }\n\nvar _ = extra()\n")
	dirty := filepath.Join(t.TempDir(), "dirty")
	if err := agenttest.BuildUnstamped(repo, dirty); err != nil {
		t.Fatal(err)
	}
	sourcetest.Write(t, repo, "main.go", string(text))
	revB := sourcetest.Git(t, repo, "rev-parse", "HEAD")

	exeA, exeDirty := f.exe("vcsless-a"), f.exe("vcsless-dirty")
	agenttest.Start(t, agenttest.Alias(t, bin, exeA)) // before the agent: cleanups detach first
	agenttest.Start(t, agenttest.Alias(t, dirty, exeDirty))
	f.startAgent(f.host, exeA, exeDirty)
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		hosts, err := f.c.Hosts(context.Background())
		if err != nil {
			return err
		}
		n := 0
		for _, h := range hosts {
			if h.Profile != nil {
				n += len(h.Profile.Processes)
			}
		}
		if n != 2 {
			return fmt.Errorf("the agent reports %d processes, want 2", n)
		}
		return nil
	})

	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exeA}, "cwd": repo})
	bps := setBreakpoints(t, c, localSrc, godap.SourceBreakpoint{Line: localLine})
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool { return bp.Id == bps[0].Id && bp.Verified })
	e := c.HitEvents(t, 1)[0]
	if h := hitOf(t, e); h.Line != remoteLine {
		t.Errorf("the process hit line %d, want commit A's line %d", h.Line, remoteLine)
	}
	if e.Body.Source == nil || e.Body.Source.Path != localSrc || e.Body.Line != localLine {
		t.Errorf("the hit shows at %+v:%d, want the checkout's %s:%d", e.Body.Source, e.Body.Line, localSrc, localLine)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)

	// 1 >> attach to the uncommitted build, 2 >> setBreakpoints,
	// << refused with the reason
	c = f.session()
	f.attach(c, map[string]any{"processes": []string{exeDirty}, "cwd": repo})
	bps = setBreakpoints(t, c, localSrc, godap.SourceBreakpoint{Line: localLine})
	c.AwaitBreakpointEvent(t, "refused", func(bp *godap.Breakpoint) bool {
		return bp.Id == bps[0].Id && !bp.Verified && strings.Contains(bp.Message, "matches no committed version") && strings.Contains(bp.Message, `"revision" setting`)
	})
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)

	// 1 >> attach with "revision", 2 >> setBreakpoints, << installed at B's line
	c = f.session()
	f.attach(c, map[string]any{"processes": []string{exeDirty}, "cwd": repo, "revision": revB[:12]})
	bps = setBreakpoints(t, c, localSrc, godap.SourceBreakpoint{Line: localLine})
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool { return bp.Id == bps[0].Id && bp.Verified })
	if h := hitOf(t, c.HitEvents(t, 1)[0]); h.Line != localLine {
		t.Errorf("the uncommitted build hit line %d, want B's line %d", h.Line, localLine)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}
