package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source/sourcetest"
)

// TestTraceBuildWithoutVCS traces a line of a checkout one commit ahead of
// two processes built with -buildvcs=false: one from commit A, whose
// revision riptrace trace finds from its debug info and says so, and whose
// hit comes from A's line; one from uncommitted code, refused with the
// reason until --revision names the commit it was built on.
func TestTraceBuildWithoutVCS(t *testing.T) {
	t.Parallel()
	repo, bin, revA := sourcetest.MovedLine(t, agenttest.BuildUnstamped)
	src := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, src, "work")
	// Built on B with a function added below the traced line, never
	// committed.
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.Write(t, repo, "main.go", string(b)+"\n//go:noinline\nfunc extra() int { return 7 }\n\nvar _ = extra()\n")
	dirty := filepath.Join(t.TempDir(), "dirty")
	if err := agenttest.BuildUnstamped(repo, dirty); err != nil {
		t.Fatal(err)
	}
	sourcetest.Write(t, repo, "main.go", string(b))
	revB := sourcetest.Git(t, repo, "rev-parse", "HEAD")

	url := startServer(t)
	a := startTargetBuild(t, bin, "vcsless-a")
	d := startTargetBuild(t, dirty, "vcsless-dirty")
	startAgent(t, url, "vcsless-host", "vcsless-a", "vcsless-dirty")
	awaitProcesses(t, url, map[*agenttest.Proc]string{a: "vcsless-host", d: "vcsless-host"}, func(p *fleet.Process) error {
		if p.Revision != "" || p.Build == "" {
			return fmt.Errorf("pid %d reports revision %q, build %q; want a build ID and no revision", p.Pid, p.Revision, p.Build)
		}
		return nil
	})

	r := run(t, stateTimeout, "trace", "--nats", url, "--json", "--count", "1", fmt.Sprintf("%s:%d", src, localLine))
	hits := decodeTraced(t, r.stdout)
	if r.code != 0 || len(hits) != 1 {
		t.Fatalf("riptrace trace --json --count 1: exit status %d, %d hits; want 0 and 1\n%s", r.code, len(hits), r.stderr)
	}
	if h := hits[0]; h.Pid != a.Pid || h.Line != localLine-sourcetest.MovedBy || h.Process.Revision != revA {
		t.Errorf("the hit came from pid %d at line %d of revision %q, want pid %d at commit A's line %d", h.Pid, h.Line, h.Process.Revision, a.Pid, localLine-sourcetest.MovedBy)
	}
	for _, said := range []string{
		"carries no vcs.revision: it runs revision " + fleet.ShortRevision(revA) + " (its debug info matches that version of the file)",
		"carries no vcs.revision: not traced there: the running code of main.go matches no committed version of it",
		"--revision REV",
	} {
		if !strings.Contains(r.stderr, said) {
			t.Errorf("riptrace trace does not say %q:\n%s", said, r.stderr)
		}
	}

	// Named, the uncommitted build is traced at B's line: its edit is
	// below it.
	r = run(t, stateTimeout, "trace", "--nats", url, "--json", "--count", "1", "--processes", exeName("vcsless-dirty"), "--revision", revB[:10], fmt.Sprintf("%s:%d", src, localLine))
	hits = decodeTraced(t, r.stdout)
	if r.code != 0 || len(hits) != 1 || hits[0].Pid != d.Pid || hits[0].Line != localLine {
		t.Fatalf("riptrace trace --revision: exit status %d, hits %+v; want one from pid %d at line %d\n%s", r.code, hits, d.Pid, localLine, r.stderr)
	}
	if !strings.Contains(r.stderr, "it runs revision "+fleet.ShortRevision(revB)+" (as --revision says)") {
		t.Errorf("riptrace trace --revision does not say what it traces:\n%s", r.stderr)
	}
}

// TestTraceFollowsBuildWithoutVCS declares a line of a checkout one commit
// ahead before any agent runs. When the agent reports a process of the
// older commit built with -buildvcs=false, the trace finds its revision
// from its debug info and declares the line again: the hit comes from that
// commit's line, not from the checkout's line number.
func TestTraceFollowsBuildWithoutVCS(t *testing.T) {
	t.Parallel()
	repo, bin, revA := sourcetest.MovedLine(t, agenttest.BuildUnstamped)
	src := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, src, "work")
	url := startServer(t)

	tr := start(t, "trace", "--nats", url, "--json", "--count", "1", "--wait", fmt.Sprintf("%s:%d", src, localLine))
	tr.await(t, cmdTimeout, "the tracing line", func(_, stderr string) bool {
		return strings.Contains(stderr, "riptrace: tracing ")
	})
	startTargetBuild(t, bin, "follow-vcsless")
	startAgent(t, url, "follow-vcsless-host", "follow-vcsless")

	said := "carries no vcs.revision: it runs revision " + fleet.ShortRevision(revA) + " (its debug info matches that version of the file)"
	tr.await(t, stateTimeout, said, func(_, stderr string) bool {
		return strings.Contains(stderr, said)
	})
	if code := tr.exitCode(t, stateTimeout); code != 0 {
		t.Fatalf("riptrace trace --count 1: exit status %d, want 0\n%s", code, tr.Stderr())
	}
	hits := decodeTraced(t, tr.Stdout())
	if len(hits) != 1 || hits[0].Line != localLine-sourcetest.MovedBy || hits[0].Process.Revision != revA {
		t.Fatalf("hits %+v, want one at commit A's line %d", hits, localLine-sourcetest.MovedBy)
	}
}
