package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/source"
	"github.com/riptrace/riptrace/source/sourcetest"
)

// syncedMain is the target of TestSourceSync at each commit: {{above}} and
// {{below}} are lines inserted above and below the traced line, {{traced}}
// the traced statement.
const syncedMain = `// Command synced is a target of the source sync test.
package main

import (
	"fmt"
	"os"
	"time"
)
{{above}}
//go:noinline
func work(n int) int {
	m := n * 2
	{{traced}} //@trace(work)
{{below}}	return m
}

func main() {
	fmt.Printf("READY pid=%d\n", os.Getpid())
	for n := 0; ; n++ {
		work(n)
		time.Sleep(5 * time.Millisecond)
	}
}

//go:noinline
func step(m, by int) int { return m + by }
`

func syncedVersion(above, traced, below string) string {
	return strings.NewReplacer("{{above}}", above, "{{traced}}", traced, "{{below}}", below).Replace(syncedMain)
}

func markerIn(t *testing.T, text string) int {
	t.Helper()
	p := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return agenttest.MarkerLine(t, p, "work")
}

// TestSourceSync runs binaries of several commits of one repository at once
// under a real agent (built in the repository, with -trimpath, in another
// directory, from a dirty tree, and from a canary commit the user's checkout
// has not fetched), and declares one tracepoint from the checkout's file and
// line the way the debug adapter does: each process gets the line (and the
// file name: the checkout renamed the file) of its own revision, a process
// whose revision changed the line is refused with the reason and never
// attached, a dirty build is traced as is with a warning, and every hit maps
// back to the checkout's file and line.
func TestSourceSync(t *testing.T) {
	// Not parallel: its builds and seven targets would slow the parallel
	// tests past their deadlines on a small machine.
	repo := sourcetest.Init(t)
	const rel, renamed = "cmd/synced/main.go", "cmd/synced/synced.go"
	gomod := "module example.com/synced\n\ngo 1.26\n"
	versions := map[string]string{
		"A": syncedVersion("", "m = step(m, 3)", ""),
		// Above: a new function; below: a new statement.
		"B": syncedVersion("\nfunc helper() int { return 1 }\n", "m = step(m, 3)", "\tm -= helper()\n"),
		// The traced statement itself changes.
		"C": syncedVersion("\nfunc helper() int { return 1 }\n", "m = step(m, 4)", "\tm -= helper()\n"),
		// The checkout: one more line above than B, the statement back.
		"D": syncedVersion("\n// helper is one.\nfunc helper() int { return 1 }\n", "m = step(m, 3)", "\tm -= helper()\n"),
		// A canary pushed after the checkout was cloned: two more lines.
		"E": syncedVersion("\n// helper is one.\n// It is the canary's.\nfunc helper() int { return 1 }\n\n", "m = step(m, 3)", "\tm -= helper()\n"),
	}
	prefix := fmt.Sprintf("rtsync-%d", os.Getpid())
	bins := t.TempDir()
	bin := func(name string) string { return filepath.Join(bins, prefix+"-"+name) }
	revs := make(map[string]string)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	build := func(dir, name string, flags ...string) {
		// The build reads the tree now; let it finish before the next commit.
		if err := agenttest.BuildStamped(dir, bin(name), flags...); err != nil {
			errs <- err
		}
	}
	checkout := filepath.Join(t.TempDir(), "checkout")
	for _, c := range []string{"A", "B", "C", "D", "E"} {
		file := rel
		if c == "E" {
			file = renamed
		}
		if c == "D" {
			// The checkout renamed the file.
			if err := os.Remove(filepath.Join(repo, filepath.FromSlash(rel))); err != nil {
				t.Fatal(err)
			}
			file = renamed
		}
		revs[c] = sourcetest.Commit(t, repo, c, map[string]string{"go.mod": gomod, file: versions[c]})
		switch c {
		case "A":
			build(filepath.Join(repo, "cmd/synced"), "a")
			// The same commit, built in another directory.
			other := filepath.Join(t.TempDir(), "elsewhere")
			sourcetest.Git(t, repo, "clone", "-q", repo, other)
			wg.Go(func() {
				if err := agenttest.BuildStamped(filepath.Join(other, "cmd/synced"), bin("a-elsewhere")); err != nil {
					errs <- err
				}
			})
		case "B":
			build(filepath.Join(repo, "cmd/synced"), "b")
			build(filepath.Join(repo, "cmd/synced"), "b-trimpath", "-trimpath")
		case "C":
			build(filepath.Join(repo, "cmd/synced"), "c")
		case "D":
			// A dirty build: an uncommitted edit below the traced line.
			sourcetest.Write(t, repo, renamed, strings.Replace(versions["D"], "time.Sleep(5", "time.Sleep(4", 1))
			build(filepath.Join(repo, "cmd/synced"), "dirty")
			sourcetest.Write(t, repo, renamed, versions["D"])
			// The user's checkout: a clone of D, which will lack E.
			sourcetest.Git(t, repo, "clone", "-q", repo, checkout)
		case "E":
			build(filepath.Join(repo, "cmd/synced"), "canary")
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	lineA, lineB, lineD, lineE := markerIn(t, versions["A"]), markerIn(t, versions["B"]), markerIn(t, versions["D"]), markerIn(t, versions["E"])
	if lineA == lineB || lineB == lineD {
		t.Fatalf("the commits do not move the traced line: %d, %d, %d", lineA, lineB, lineD)
	}

	// The processes start first, so that cleanups (last in, first out) stop
	// the agent, which detaches, before the processes are killed: a killed
	// process stays unreaped while a debugger is attached.
	procs := make(map[string]*agenttest.Proc)
	for _, name := range []string{"a", "a-elsewhere", "b", "b-trimpath", "c", "dirty", "canary"} {
		procs[name] = agenttest.Start(t, bin(name))
	}

	// One real agent managing exactly these binaries.
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	var log syncBuffer
	host := fmt.Sprintf("sync-%d", hostSeq.Add(1))
	agenttest.RunAgent(t, s, agent.Config{Host: host, Processes: []string{prefix + "-*"}}, &log)

	// The fleet reports every revision (the dirty build runs D).
	var hosts []fleet.HostEntry
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		var err error
		if hosts, err = c.Hosts(context.Background()); err != nil {
			return err
		}
		if got := source.Revisions(hosts, "example.com/synced"); len(got) != 5 {
			return fmt.Errorf("fleet revisions %v, want A, B, C, D and E", got)
		}
		return nil
	})
	for _, h := range hosts {
		for _, p := range h.Profile.Processes {
			if p.Pid == procs["dirty"].Pid && (!p.Modified || p.Revision != revs["D"]) {
				t.Fatalf("the dirty build reports revision %s modified=%v", p.Revision, p.Modified)
			}
		}
	}

	// Declared from the checkout's file and line, as DAP, LSP and the CLI do;
	// E is fetched from the checkout's origin on the way.
	r, err := source.OpenRepo(checkout)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(checkout, filepath.FromSlash(renamed))
	loc, err := r.Locate(local, lineD, source.Revisions(hosts, "example.com/synced"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Revision != revs["D"] || loc.Path != renamed || loc.Lines[revs["A"]] != lineA || loc.Lines[revs["B"]] != lineB || loc.Lines[revs["D"]] != lineD || !strings.Contains(loc.Refused[revs["C"]], "was changed in revision") {
		t.Fatalf("location = %+v; want A at %d, B at %d, D at %d and C refused", loc, lineA, lineB, lineD)
	}
	if loc.Lines[revs["E"]] != lineE {
		t.Fatalf("location = %+v; want E (fetched from origin) at %d", loc, lineE)
	}
	if loc.Paths[revs["A"]] != rel || loc.Paths[revs["B"]] != rel || len(loc.Paths) != 2 {
		t.Fatalf("paths = %v; want %s in A and B", loc.Paths, rel)
	}
	spec := &fleet.Spec{
		ID:       "synced",
		Location: loc,
		Selector: fleet.Selector{Processes: []string{prefix + "-*"}},
		Capture:  fleet.Capture{Args: true, StackDepth: 1},
		Limits:   fleet.Limits{MaxHitsPerSecond: 100},
	}
	if err := c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}

	type want struct {
		line    int
		refused string // the status message says this, and the line is not traced
		warning string
	}
	wants := map[string]want{
		"a":           {line: lineA},
		"a-elsewhere": {line: lineA},
		"b":           {line: lineB},
		"b-trimpath":  {line: lineB},
		"c":           {refused: "not traced in revision " + revs["C"][:12] + ": line " + fmt.Sprint(lineD) + " of " + renamed},
		"dirty":       {line: lineD, warning: "vcs.modified=true"},
		"canary":      {line: lineE},
	}
	byPid := make(map[int]string)
	for name, p := range procs {
		byPid[p.Pid] = name
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer wcancel()
	events, err := c.WatchStatus(wctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	settled := make(map[string]fleet.StatusEvent)
	for len(settled) < len(wants) {
		var ev fleet.StatusEvent
		select {
		case ev = <-events:
		case <-wctx.Done():
			t.Fatalf("statuses settled for %d of %d processes: %v\nagent log:\n%s", len(settled), len(wants), settled, log.String())
		}
		name, ok := byPid[ev.Pid]
		if !ok || ev.Deleted || ev.State == fleet.StatePending {
			continue
		}
		w := wants[name]
		switch {
		case w.refused != "":
			if ev.State != fleet.StateError || !strings.Contains(ev.Message, w.refused) || !strings.Contains(ev.Message, "was changed") {
				t.Fatalf("%s: status %s %q, want an error saying %q", name, ev.State, ev.Message, w.refused)
			}
		// Throttled is installed too: a loaded machine hands hits over in
		// bursts past the tracepoint's rate.
		case (ev.State != fleet.StateInstalled && ev.State != fleet.StateThrottled) || ev.Placement == nil || ev.Placement.Line != w.line:
			t.Fatalf("%s (pid %d): status %s %q placement %+v; want installed at line %d", name, ev.Pid, ev.State, ev.Message, ev.Placement, w.line)
		case w.warning != "" && !strings.Contains(ev.Message, "warning: "+"the process was built from a tree with uncommitted changes ("+w.warning):
			t.Fatalf("%s: status message %q, want a warning about %q", name, ev.Message, w.warning)
		case w.warning == "" && strings.Contains(ev.Message, "warning"):
			t.Fatalf("%s: status message %q has a warning", name, ev.Message)
		}
		t.Logf("%s (pid %d): %s: %s", name, ev.Pid, ev.State, ev.Message)
		settled[name] = ev
	}
	if p, err := c.Profile(context.Background(), host); err == nil {
		for _, proc := range p.Processes {
			if proc.Pid == procs["c"].Pid && proc.Attached {
				t.Error("the agent attached to the process whose line was refused")
			}
		}
	}

	// Every traced process hits, at its own line; each hit maps back to the
	// checkout's line.
	ws, err := source.NewWorkspace(checkout)
	if err != nil {
		t.Fatal(err)
	}
	hits, err := c.Hits(wctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer hits.Close()
	seen := make(map[string]bool)
	for len(seen) < len(wants)-1 {
		h, err := hits.Next(wctx)
		if err != nil {
			t.Fatalf("hits from %v only: %v", seen, err)
		}
		name := byPid[h.Pid]
		if name == "c" || h.Line != wants[name].line {
			t.Fatalf("hit from %s at %s:%d, want line %d", name, h.File, h.Line, wants[name].line)
		}
		if name == "b-trimpath" && h.File != "example.com/synced/"+rel || name == "dirty" && !strings.HasSuffix(h.File, renamed) {
			t.Fatalf("-trimpath hit names %s", h.File)
		}
		if name == "a-elsewhere" && (strings.HasPrefix(h.File, repo) || strings.HasPrefix(h.File, checkout)) {
			t.Fatalf("the build in another directory names %s, inside the checkout", h.File)
		}
		file, line, err := r.LocalHit(ws, h.File, h.Line, h.Process)
		if err != nil || file != local || line != lineD {
			t.Fatalf("hit from %s at %s:%d (revision %s) maps to %s:%d, %v; want %s:%d", name, h.File, h.Line, h.Process.Revision, file, line, err, local, lineD)
		}
		seen[name] = true
	}
}
