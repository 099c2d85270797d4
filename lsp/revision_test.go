package lsp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/lsp"
	"github.com/riptrace/riptrace/source/sourcetest"
)

// TestToggleRevisionMapping: the fleet runs commit A while the checkout is
// at B, which has two more lines above the traced one. Toggling the
// checkout's line maps it into A, as the debug adapter and riptrace trace
// do: the process traces A's line, and its hits show on the checkout's.
func TestToggleRevisionMapping(t *testing.T) {
	t.Parallel()
	repo, bin, revA := sourcetest.MovedLine(t, agenttest.BuildStamped)
	src := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, src, "work")
	remoteLine := localLine - sourcetest.MovedBy // commit A's

	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	exe := fmt.Sprintf("lsp-revs-%d-%d", os.Getpid(), envSeq.Add(1))
	bin = agenttest.Alias(t, bin, exe)
	agenttest.Start(t, bin) // before the agent: cleanups detach first
	agenttest.RunAgent(t, s, agent.Config{Host: exe, Processes: []string{exe}, Log: testLogger(t)}, nil)
	// The revision runs once the agent reports the process with it.
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		hosts, err := c.Hosts(context.Background())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Profile == nil {
				continue
			}
			for _, p := range h.Profile.Processes {
				if p.Exe == bin || filepath.Base(p.Exe) == exe {
					if p.Revision == revA {
						return nil
					}
					return fmt.Errorf("process %s runs revision %q, want %s", exe, p.Revision, revA)
				}
			}
		}
		return fmt.Errorf("no agent reports process %s yet", exe)
	})

	sess := startSession(t, lsp.Options{Log: testLogger(t)})
	// 1 >> initialize at the checkout
	sess.initialize(repo, map[string]any{"nats": s.ClientURL(), "processes": []string{exe}, "history": "1m"})
	// 2 >> executeCommand riptrace.toggleTracepoint on the checkout's line,
	// << traced, mapped into A
	u := uri.File(src)
	var res struct {
		Traced   bool
		Location struct {
			Lines map[string]int
		}
	}
	testsupport.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		r, err := sess.server.ExecuteCommand(ctx(t), &protocol.ExecuteCommandParams{
			Command:   lsp.CommandToggleTracepoint,
			Arguments: []protocol.LSPAny{mustJSON(string(u)), mustJSON(localLine - 1)},
		})
		if err != nil {
			return err
		}
		return json.Unmarshal(r, &res)
	})
	if !res.Traced || res.Location.Lines[revA] != remoteLine {
		t.Fatalf("toggle: traced %v, lines %v; want line %d in revision %s", res.Traced, res.Location.Lines, remoteLine, revA)
	}
	// 3 >> codeLens, << the hits of A's line on the checkout's
	sess.awaitLens(u, localLine-1, regexp.MustCompile(`^● \d+ hits? · 1 host · `))
}

// TestToggleFollowsRevisions toggles the checkout's line before any agent
// runs, so that no revision is known and it goes out unmapped; when the
// agent reports a process of commit A, the server maps the line into A and
// declares it again: hits of A's line show on the checkout's.
func TestToggleFollowsRevisions(t *testing.T) {
	t.Parallel()
	repo, bin, _ := sourcetest.MovedLine(t, agenttest.BuildStamped)
	src := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, src, "work")

	s := fleettest.RunServer(t)
	exe := fmt.Sprintf("lsp-follow-%d-%d", os.Getpid(), envSeq.Add(1))
	bin = agenttest.Alias(t, bin, exe)

	sess := startSession(t, lsp.Options{Log: testLogger(t)})
	// 1 >> initialize at the checkout
	sess.initialize(repo, map[string]any{"nats": s.ClientURL(), "processes": []string{exe}, "history": "1m"})
	// 2 >> executeCommand riptrace.toggleTracepoint, << traced, mapped
	// into no revision: none runs yet
	u := uri.File(src)
	var res struct{ Traced bool }
	testsupport.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		r, err := sess.server.ExecuteCommand(ctx(t), &protocol.ExecuteCommandParams{
			Command:   lsp.CommandToggleTracepoint,
			Arguments: []protocol.LSPAny{mustJSON(string(u)), mustJSON(localLine - 1)},
		})
		if err != nil {
			return err
		}
		return json.Unmarshal(r, &res)
	})
	if !res.Traced {
		t.Fatal("toggle: not traced")
	}
	// The process of A starts, and its agent, after the toggle.
	agenttest.Start(t, bin) // before the agent: cleanups detach first
	agenttest.RunAgent(t, s, agent.Config{Host: exe, Processes: []string{exe}, Log: testLogger(t)}, nil)
	// 3 >> codeLens, << the hits of A's line on the checkout's
	sess.awaitLens(u, localLine-1, regexp.MustCompile(`^● \d+ hits? · 1 host · `))
}

// TestToggleRevisionSetting: the fleet runs a build of commit A without
// vcs.revision while the checkout is at B. With the riptrace.revision
// setting naming A, toggling the checkout's line traces A's line in that
// build, and its hits show on the checkout's line.
func TestToggleRevisionSetting(t *testing.T) {
	t.Parallel()
	repo, bin, revA := sourcetest.MovedLine(t, agenttest.BuildUnstamped)
	src := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, src, "work")
	remoteLine := localLine - sourcetest.MovedBy // commit A's

	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	exe := fmt.Sprintf("lsp-vcsless-%d-%d", os.Getpid(), envSeq.Add(1))
	bin = agenttest.Alias(t, bin, exe)
	agenttest.Start(t, bin) // before the agent: cleanups detach first
	agenttest.RunAgent(t, s, agent.Config{Host: exe, Processes: []string{exe}, Log: testLogger(t)}, nil)
	var build string
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		hosts, err := c.Hosts(context.Background())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Profile == nil {
				continue
			}
			for _, p := range h.Profile.Processes {
				if filepath.Base(p.Exe) == exe {
					if build = p.Build; p.Revision != "" || build == "" {
						return fmt.Errorf("process %s reports revision %q, build %q; want a build ID and no revision", exe, p.Revision, build)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("no agent reports process %s yet", exe)
	})

	sess := startSession(t, lsp.Options{Log: testLogger(t)})
	// 1 >> initialize at the checkout, with the revision named
	sess.initialize(repo, map[string]any{"nats": s.ClientURL(), "processes": []string{exe}, "history": "1m", "revision": revA[:12]})
	// 2 >> executeCommand riptrace.toggleTracepoint on the checkout's line,
	// << traced, the build taken to run A
	u := uri.File(src)
	var res struct {
		Traced   bool
		Location struct {
			Lines  map[string]int
			Builds map[string]struct{ Revision, How string }
		}
	}
	testsupport.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		r, err := sess.server.ExecuteCommand(ctx(t), &protocol.ExecuteCommandParams{
			Command:   lsp.CommandToggleTracepoint,
			Arguments: []protocol.LSPAny{mustJSON(string(u)), mustJSON(localLine - 1)},
		})
		if err != nil {
			return err
		}
		return json.Unmarshal(r, &res)
	})
	if b := res.Location.Builds[build]; !res.Traced || b.Revision != revA || b.How != "override" || res.Location.Lines[revA] != remoteLine {
		t.Fatalf("toggle: traced %v, location %+v; want build %s taken to run %s, at line %d", res.Traced, res.Location, build, revA, remoteLine)
	}
	// 3 >> codeLens, << the hits of A's line on the checkout's
	sess.awaitLens(u, localLine-1, regexp.MustCompile(`^● \d+ hits? · 1 host · `))
}
