package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// vcslessMain is the target of TestBuildsWithoutVCS at each commit:
// {{above}} is inserted above the traced function, {{note}} is a comment
// on a line of its own, {{tail}} goes at the end of the file.
const vcslessMain = `// Command vcsless is a target of the revision-finding test.
package main

import (
	"fmt"
	"os"
	"time"
)

var commit, version string // set with -ldflags -X, or not
{{above}}
//go:noinline
func work(n int) int {
	m := n * 2
	m += step(m, 3) //@trace(work)
	// {{note}}
	return m
}

func main() {
	fmt.Printf("READY pid=%d commit=%q version=%q\n", os.Getpid(), commit, version)
	for n := 0; ; n++ {
		work(n)
		time.Sleep(5 * time.Millisecond)
	}
}

//go:noinline
func step(m, by int) int { return m + by }
{{tail}}`

func vcslessVersion(above, note, tail string) string {
	return strings.NewReplacer("{{above}}", above, "{{note}}", note, "{{tail}}", tail).Replace(vcslessMain)
}

// TestBuildsWithoutVCS runs binaries built with -buildvcs=false from
// several commits of one repository under a real agent, and declares one
// tracepoint from the checkout's line the way every front end does
// (source.Resolve). Each build gets the line of the revision it was built
// from, found by its -ldflags -X version string (a short commit hash, a
// tag) or by its DWARF matched against the file's history; a build that
// two committed versions match is traced as in the newest, with a note; a
// build from uncommitted code is refused with the reason and never
// attached, until the user names its revision. Every hit carries the
// revision found and maps back to the checkout's line.
func TestBuildsWithoutVCS(t *testing.T) {
	repo := sourcetest.Init(t)
	const rel = "cmd/vcsless/main.go"
	gomod := "module example.com/vcsless\n\ngo 1.26\n"
	versions := map[string]string{
		"A": vcslessVersion("", "keep m even", ""),
		// A function nobody calls (the linker drops it) moves the line.
		"B": vcslessVersion("\n// unused is dead code.\nfunc unused() int { return 1 }\n", "keep m even", ""),
		// Two more lines above.
		"C": vcslessVersion("\n// unused is dead code.\n// It moves the traced line.\n\nfunc unused() int { return 1 }\n", "keep m even", ""),
		// A comment reworded: the code of C and D is the same.
		"D": vcslessVersion("\n// unused is dead code.\n// It moves the traced line.\n\nfunc unused() int { return 1 }\n", "m stays even", ""),
	}
	dir := filepath.Join(repo, "cmd/vcsless")
	prefix := fmt.Sprintf("rtvcsless-%d", os.Getpid())
	bins := t.TempDir()
	bin := func(name string) string { return filepath.Join(bins, prefix+"-"+name) }
	build := func(name string, flags ...string) {
		t.Helper()
		if err := agenttest.BuildUnstamped(dir, bin(name), flags...); err != nil {
			t.Fatal(err)
		}
	}
	revs := make(map[string]string)
	for _, c := range []string{"A", "B", "C", "D"} {
		revs[c] = sourcetest.Commit(t, repo, c, map[string]string{"go.mod": gomod, rel: versions[c]})
		switch c {
		case "A":
			build("a")
			build("a-sha", "-ldflags=-X main.commit="+revs["A"][:10])
			// Built from code never committed: a function added below
			// the traced line.
			sourcetest.Write(t, repo, rel, vcslessVersion("", "keep m even", "\n//go:noinline\nfunc extra() int { return 7 }\n\nvar _ = extra()\n"))
			build("dirty")
			sourcetest.Write(t, repo, rel, versions["A"])
		case "B":
			sourcetest.Git(t, repo, "tag", "v0.2.0")
			build("b-tag", "-ldflags=-X main.version=v0.2.0")
		case "C":
			build("c")
		}
	}
	line := make(map[string]int)
	for c, text := range versions {
		line[c] = markerIn(t, text)
	}
	if line["A"] == line["B"] || line["B"] == line["C"] || line["C"] != line["D"] {
		t.Fatalf("the commits do not move the traced line as the test needs: %v", line)
	}

	procs := make(map[string]*agenttest.Proc)
	names := []string{"a", "a-sha", "b-tag", "c", "dirty"}
	for _, name := range names {
		procs[name] = agenttest.Start(t, bin(name))
	}
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	var log syncBuffer
	host := fmt.Sprintf("vcsless-%d", hostSeq.Add(1))
	agenttest.RunAgent(t, s, agent.Config{Host: host, Processes: []string{prefix + "-*"}}, &log)

	// The agent reports each process, without a revision but with its
	// build ID and the version strings set with -X.
	builds := make(map[string]string) // by name
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		p, err := c.Profile(context.Background(), host)
		if err != nil {
			return err
		}
		for _, proc := range p.Processes {
			for name, pr := range procs {
				if pr.Pid == proc.Pid {
					if proc.Revision != "" || proc.Build == "" {
						return fmt.Errorf("%s reports revision %q, build %q", name, proc.Revision, proc.Build)
					}
					builds[name] = proc.Build
					if name == "a-sha" && proc.Stamps["main.commit"] != revs["A"][:10] || name == "b-tag" && proc.Stamps["main.version"] != "v0.2.0" || name == "a" && len(proc.Stamps) != 0 {
						return fmt.Errorf("%s reports stamps %q", name, proc.Stamps)
					}
				}
			}
		}
		if len(builds) != len(names) {
			return fmt.Errorf("the agent reports %d of the %d processes", len(builds), len(names))
		}
		return nil
	})

	// Declared from the checkout's line (D, the checkout's HEAD).
	r, err := source.OpenRepo(repo)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(repo, filepath.FromSlash(rel))
	res := source.Resolve(context.Background(), c, r, []source.Line{{File: local, Line: line["D"]}})
	if res.FleetErr != nil || res.Errs[0] != nil {
		t.Fatalf("resolving: %v, %v", res.FleetErr, res.Errs[0])
	}
	loc := res.Locations[0]
	wantHow := map[string]struct{ rev, how string }{
		"a":     {revs["A"], "fingerprint"},
		"a-sha": {revs["A"], "stamp main.commit"},
		"b-tag": {revs["B"], "stamp main.version"},
		"c":     {revs["D"], "fingerprint"},
	}
	for name, w := range wantHow {
		if b := loc.Builds[builds[name]]; b.Revision != w.rev || b.How != w.how || b.Refused != "" {
			t.Errorf("%s: found %+v, want revision %s by %s", name, b, w.rev[:12], w.how)
		}
	}
	if b := loc.Builds[builds["c"]]; !strings.Contains(b.Note, "2 committed versions of "+rel+" match") {
		t.Errorf("c: note %q, want one saying two versions match", b.Note)
	}
	if b := loc.Builds[builds["dirty"]]; b.Revision != "" || !strings.Contains(b.Refused, "the running code of "+rel+" matches no committed version") || !strings.Contains(b.Refused, "--revision") {
		t.Errorf("dirty: found %+v, want it refused with the reason and the override", b)
	}
	if t.Failed() {
		t.FailNow()
	}

	spec := &fleet.Spec{
		ID:       "vcsless",
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
		refused string
		warning string
	}
	wants := map[string]want{
		"a":     {line: line["A"]},
		"a-sha": {line: line["A"]},
		"b-tag": {line: line["B"]},
		"c":     {line: line["D"], warning: "2 committed versions of " + rel + " match its code: traced as in the newest, revision " + revs["D"][:12]},
		"dirty": {refused: "the running code of " + rel + " matches no committed version"},
	}
	byPid := make(map[int]string)
	for name, p := range procs {
		byPid[p.Pid] = name
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer wcancel()
	// stale is the code of a status from before a declaration changed, to
	// pass over with the last words of the placement it replaces.
	awaitStatuses := func(wants map[string]want, stale string) {
		t.Helper()
		events, err := c.WatchStatus(wctx, spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		settled := make(map[string]bool)
		for len(settled) < len(wants) {
			var ev fleet.StatusEvent
			select {
			case ev = <-events:
			case <-wctx.Done():
				t.Fatalf("statuses settled for %v of %d processes\nagent log:\n%s", settled, len(wants), log.String())
			}
			name, ok := byPid[ev.Pid]
			w, wanted := wants[name]
			if !ok || !wanted || ev.Deleted || ev.State == fleet.StatePending || stale != "" && (ev.Code == stale || ev.State == fleet.StateDone) {
				continue
			}
			switch {
			case w.refused != "":
				if ev.State != fleet.StateError || ev.Code != fleet.CodeNoRevision || !strings.Contains(ev.Message, w.refused) {
					t.Fatalf("%s: status %s %q, want an error saying %q", name, ev.State, ev.Message, w.refused)
				}
			case (ev.State != fleet.StateInstalled && ev.State != fleet.StateThrottled) || ev.Placement == nil || ev.Placement.Line != w.line:
				t.Fatalf("%s (pid %d): status %s %q placement %+v; want installed at line %d", name, ev.Pid, ev.State, ev.Message, ev.Placement, w.line)
			case w.warning != "" && !strings.Contains(ev.Message, w.warning):
				t.Fatalf("%s: status message %q, want a warning saying %q", name, ev.Message, w.warning)
			case w.warning == "" && strings.Contains(ev.Message, "warning"):
				t.Fatalf("%s: status message %q has a warning", name, ev.Message)
			}
			t.Logf("%s (pid %d): %s: %s", name, ev.Pid, ev.State, ev.Message)
			settled[name] = true
		}
	}
	awaitStatuses(wants, "")
	if p, err := c.Profile(context.Background(), host); err == nil {
		for _, proc := range p.Processes {
			if proc.Pid == procs["dirty"].Pid && proc.Attached {
				t.Error("the agent attached to the process whose revision was not found")
			}
		}
	}

	// Every traced process hits at its own line, names the revision found
	// for it, and maps back to the checkout's line.
	ws, err := source.NewWorkspace(repo)
	if err != nil {
		t.Fatal(err)
	}
	hits, err := c.Hits(wctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer hits.Close()
	seen := make(map[string]bool)
	for len(seen) < len(wantHow) {
		h, err := hits.Next(wctx)
		if err != nil {
			t.Fatalf("hits from %v only: %v", seen, err)
		}
		name := byPid[h.Pid]
		if name == "dirty" || h.Line != wants[name].line || h.Process.Revision != wantHow[name].rev {
			t.Fatalf("hit from %s at %s:%d of revision %q; want line %d of %s", name, h.File, h.Line, h.Process.Revision, wants[name].line, wantHow[name].rev)
		}
		file, l, err := r.LocalHit(ws, h.File, h.Line, h.Process)
		if err != nil || file != local || l != line["D"] {
			t.Fatalf("hit from %s at %s:%d maps to %s:%d, %v; want %s:%d", name, h.File, h.Line, file, l, err, local, line["D"])
		}
		seen[name] = true
	}

	// The user names the revision the uncommitted build came from (its
	// edit is below the traced line): it is traced there.
	res = source.Resolve(context.Background(), c, r, []source.Line{{File: local, Line: line["D"], Revision: "v0.2.0~1"}})
	if res.Errs[0] != nil {
		t.Fatal(res.Errs[0])
	}
	if b := res.Locations[0].Builds[builds["dirty"]]; b.Revision != revs["A"] || b.How != "override" {
		t.Fatalf("dirty with the revision named: %+v, want %s by override", b, revs["A"][:12])
	}
	spec.Location = res.Locations[0]
	if err := c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	awaitStatuses(map[string]want{"dirty": {line: line["A"]}}, fleet.CodeNoRevision)
}
