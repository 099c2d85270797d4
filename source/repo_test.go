package source_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
	"github.com/riptrace/riptrace/source/sourcetest"
)

const gomod = "module example.com/shop\n\ngo 1.26\n"

// history makes a repository whose file pay.go moves its traced line
// around: A has it at 4; B inserts two lines above it and deletes one below
// (6); C changes it; D deletes it; E, the checkout, has it again at 7.
func history(t *testing.T) (dir string, revs map[string]string) {
	dir = sourcetest.Init(t)
	revs = make(map[string]string)
	for _, c := range []struct{ name, text string }{
		{"A", "l1\nl2\nl3\nTRACE\nl5\nl6\n"},
		{"B", "l1\nnew1\nnew2\nl2\nl3\nTRACE\nl6\n"},
		{"C", "l1\nnew1\nnew2\nl2\nl3\nTRACE changed\nl6\n"},
		{"D", "l1\nnew1\nnew2\nl2\nl3\nl6\n"},
		{"E", "l0\nl1\nnew1\nnew2\nl2\nl3\nTRACE\nl6\nl7\n"},
	} {
		revs[c.name] = sourcetest.Commit(t, dir, c.name, map[string]string{"go.mod": gomod, "pay/pay.go": c.text})
	}
	return dir, revs
}

func TestLineInRevisions(t *testing.T) {
	dir, revs := history(t)
	r, err := source.OpenRepo(filepath.Join(dir, "pay")) // found upwards
	if err != nil {
		t.Fatal(err)
	}
	if r.Root() != dir {
		t.Fatalf("Root = %s, want %s", r.Root(), dir)
	}
	if head, _ := r.Head(); head != revs["E"] {
		t.Fatalf("Head = %s, want %s", head, revs["E"])
	}
	for _, tc := range []struct {
		rev     string
		want    int
		why     source.Mapping
		message string
	}{
		{"A", 4, source.Mapped, ""},
		{"B", 6, source.Mapped, ""},
		{"C", 0, source.Changed, `line 7 of pay/pay.go ("TRACE") was changed in revision ` + revs["C"][:12]},
		{"D", 0, source.Missing, `line 7 of pay/pay.go ("TRACE") does not exist in revision ` + revs["D"][:12]},
		{"E", 7, source.Mapped, ""},
	} {
		t.Run(tc.rev, func(t *testing.T) {
			got, err := r.LineIn(revs[tc.rev], "pay/pay.go", 7)
			if tc.why == source.Mapped {
				if err != nil || got != tc.want {
					t.Fatalf("LineIn = %d, %v; want %d", got, err, tc.want)
				}
				back, err := r.LocalLine(revs[tc.rev], "pay/pay.go", got)
				if err != nil || back != 7 {
					t.Fatalf("LocalLine(%d) = %d, %v; want 7", got, back, err)
				}
				return
			}
			var le *source.LineError
			if !errors.As(err, &le) || le.Why != tc.why || le.Rev != revs[tc.rev] || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("LineIn = %d, %v; want a LineError %q", got, err, tc.message)
			}
		})
	}
	// Lines of old revisions that the checkout no longer has.
	if _, err := r.LocalLine(revs["A"], "pay/pay.go", 5); err == nil || !strings.Contains(err.Error(), `line 5 of pay/pay.go ("l5") does not exist in the checkout`) {
		t.Fatalf("LocalLine of a deleted line: %v", err)
	}
	if n, err := r.LocalLine(revs["A"], "pay/pay.go", 6); err != nil || n != 8 {
		t.Fatalf("LocalLine(A, 6) = %d, %v; want 8", n, err)
	}
	if _, err := r.LineIn(revs["A"], "pay/pay.go", 99); err == nil || !strings.Contains(err.Error(), "has no line 99 (it has 9 lines)") {
		t.Fatalf("LineIn past the end: %v", err)
	}
	// A short revision works like the full one.
	if n, err := r.LineIn(revs["B"][:10], "pay/pay.go", 7); err != nil || n != 6 {
		t.Fatalf("LineIn with a short revision = %d, %v", n, err)
	}

	// Uncommitted edits move the line in the checkout, not in the revisions.
	file := filepath.Join(dir, "pay", "pay.go")
	sourcetest.Write(t, dir, "pay/pay.go", "dirty\nl0\nl1\nnew1\nnew2\nl2\nl3\nTRACE\nl6\nl7\n")
	if n, err := r.LineIn(revs["A"], "pay/pay.go", 8); err != nil || n != 4 {
		t.Fatalf("LineIn(A) after an uncommitted edit = %d, %v; want 4", n, err)
	}
	if n, err := r.LocalLine(revs["E"], "pay/pay.go", 7); err != nil || n != 8 {
		t.Fatalf("LocalLine(HEAD, 7) with an uncommitted edit = %d, %v; want 8", n, err)
	}

	loc, err := r.Locate(file, 8, []string{revs["A"], revs["B"], revs["C"], revs["D"], revs["E"]})
	if err != nil {
		t.Fatal(err)
	}
	if loc.Module != "example.com/shop" || loc.Path != "pay/pay.go" || loc.Line != 8 || loc.Revision != "" {
		t.Fatalf("Locate = %+v: want example.com/shop pay/pay.go:8 and no revision (the file has uncommitted edits)", loc)
	}
	wantLines := map[string]int{revs["A"]: 4, revs["B"]: 6, revs["E"]: 7}
	if len(loc.Lines) != len(wantLines) || len(loc.Refused) != 2 || len(loc.Paths) != 0 {
		t.Fatalf("Locate = %+v; want lines %v and C, D refused", loc, wantLines)
	}
	for rev, n := range wantLines {
		if loc.Lines[rev] != n {
			t.Errorf("Lines[%s] = %d, want %d", rev, loc.Lines[rev], n)
		}
	}
	if !strings.Contains(loc.Refused[revs["C"]], "was changed in revision") || !strings.Contains(loc.Refused[revs["D"]], "does not exist in revision") {
		t.Errorf("Refused = %v", loc.Refused)
	}
	if u := source.Unmapped(loc, []string{revs["A"], revs["C"], "ffff"}); len(u) != 1 || u[0] != "ffff" {
		t.Errorf("Unmapped = %v, want [ffff]", u)
	}
	spec := fleet.Spec{ID: "t", Location: loc}
	if err := spec.Validate(); err != nil {
		t.Fatalf("the located spec does not validate: %v", err)
	}

	// A line edited and not committed: the change is the user's, and the
	// reason says so rather than blame the revision that runs.
	sourcetest.Write(t, dir, "pay/pay.go", "l0\nl1\nnew1\nnew2\nl2\nl3\nTRACE edited\nl6\nl7\n")
	_, err = r.LineIn(revs["A"], "pay/pay.go", 7)
	var le *source.LineError
	if !errors.As(err, &le) || !le.Uncommitted || !strings.Contains(err.Error(), "is an uncommitted edit in the checkout: revision "+revs["A"][:12]+", which runs, does not have it") {
		t.Fatalf("LineIn of an edited line: %v; want a LineError naming the uncommitted edit", err)
	}
	// A line committed since the revision is not the user's edit: l0,
	// added in E.
	if _, err := r.LineIn(revs["C"], "pay/pay.go", 1); !errors.As(err, &le) || le.Uncommitted || !strings.Contains(err.Error(), "does not exist in revision") {
		t.Fatalf("LineIn(C) of a line not edited since HEAD: %v; want a LineError not blaming an uncommitted edit", err)
	}

	// Clean again: the location names HEAD.
	sourcetest.Write(t, dir, "pay/pay.go", "l0\nl1\nnew1\nnew2\nl2\nl3\nTRACE\nl6\nl7\n")
	loc, err = source.LocateAt(file, 7, nil)
	if err != nil || loc.Revision != revs["E"] || loc.Line != 7 || loc.Lines != nil {
		t.Fatalf("LocateAt of a clean file = %+v, %v; want revision %s", loc, err, revs["E"])
	}
}

func TestRename(t *testing.T) {
	dir := sourcetest.Init(t)
	a := sourcetest.Commit(t, dir, "A", map[string]string{"go.mod": gomod, "pay/charge.go": "package pay\n\nfunc Charge() {\n\tx := 1\n\t_ = x // TRACE\n}\n"})
	if err := os.Remove(filepath.Join(dir, "pay", "charge.go")); err != nil {
		t.Fatal(err)
	}
	b := sourcetest.Commit(t, dir, "B: rename", map[string]string{"pay/billing.go": "package pay\n\n// Charge charges.\nfunc Charge() {\n\tx := 1\n\t_ = x // TRACE\n}\n"})
	r, err := source.OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := r.PathIn(a, "pay/billing.go"); err != nil || p != "pay/charge.go" {
		t.Fatalf("PathIn(A) = %q, %v; want pay/charge.go", p, err)
	}
	if n, err := r.LineIn(a, "pay/billing.go", 6); err != nil || n != 5 {
		t.Fatalf("LineIn(A) across the rename = %d, %v; want 5", n, err)
	}
	if p, err := r.LocalPath(a, "pay/charge.go"); err != nil || p != "pay/billing.go" {
		t.Fatalf("LocalPath(A, pay/charge.go) = %q, %v; want pay/billing.go", p, err)
	}
	if n, err := r.LocalLine(a, "pay/billing.go", 5); err != nil || n != 6 {
		t.Fatalf("LocalLine(A, 5) = %d, %v; want 6", n, err)
	}
	loc, err := r.Locate(filepath.Join(dir, "pay", "billing.go"), 6, []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if loc.Lines[a] != 5 || loc.Paths[a] != "pay/charge.go" || loc.Lines[b] != 6 || len(loc.Paths) != 1 {
		t.Fatalf("Locate across a rename = %+v", loc)
	}
	// What an agent makes of it for a process of revision A.
	at, warning, ferr := loc.For(a, false)
	if ferr != nil || warning != "" || at.Path != "pay/charge.go" || at.Line != 5 {
		t.Fatalf("For(A) = %+v, %q, %v", at, warning, ferr)
	}
	// A hit in revision A, named as a -trimpath build and as a build
	// directory would name it, lands on the renamed local file.
	ws, err := source.NewWorkspace(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, remote := range []string{"example.com/shop/pay/charge.go", "/build/shop/pay/charge.go"} {
		file, line, err := r.LocalHit(ws, remote, 5, fleet.ProcessRef{Revision: a})
		if err != nil || file != filepath.Join(dir, "pay", "billing.go") || line != 6 {
			t.Errorf("LocalHit(%s:5 in A) = %s:%d, %v; want billing.go:6", remote, file, line, err)
		}
	}
}

func TestFetchMissingRevision(t *testing.T) {
	upstream, revs := history(t)
	clone := filepath.Join(t.TempDir(), "clone")
	sourcetest.Git(t, upstream, "clone", "-q", upstream, clone)
	// Upstream moves on after the clone: a canary built from F runs in the
	// fleet, and the checkout has never seen F.
	f := sourcetest.Commit(t, upstream, "F", map[string]string{"pay/pay.go": "l0\nl1\ncanary\nnew1\nnew2\nl2\nl3\nTRACE\nl6\nl7\n"})
	r, err := source.OpenRepo(clone)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.LineIn(f, "pay/pay.go", 7); err != nil || n != 8 {
		t.Fatalf("LineIn(F) = %d, %v; want 8 after fetching F from origin", n, err)
	}
	if n, err := r.LineIn(revs["A"], "pay/pay.go", 7); err != nil || n != 4 {
		t.Fatalf("LineIn(A) = %d, %v; want 4", n, err)
	}

	// A revision no remote has: the reason says so and how to fix it.
	ghost := strings.Repeat("ab", 20)
	_, err = r.LineIn(ghost, "pay/pay.go", 7)
	var me *source.MissingRevisionError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "is not in the repository at "+clone) || !strings.Contains(err.Error(), "origin ("+upstream+")") || !strings.Contains(err.Error(), "git -C "+clone+" fetch") {
		t.Fatalf("LineIn of a revision nobody has: %v", err)
	}
	t.Logf("a revision nobody has: %v", err)
	// A remote that cannot be reached: the fetch error is in the reason.
	sourcetest.Git(t, clone, "remote", "set-url", "origin", filepath.Join(t.TempDir(), "gone"))
	r, err = source.OpenRepo(clone)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := r.Locate(filepath.Join(clone, "pay", "pay.go"), 7, []string{ghost, revs["B"]})
	if err != nil {
		t.Fatal(err)
	}
	if why := loc.Refused[ghost]; !strings.Contains(why, "fetching it from origin") || !strings.Contains(why, "failed") || loc.Lines[revs["B"]] != 6 {
		t.Fatalf("Locate with an unreachable remote = %+v", loc)
	}
	t.Logf("an unreachable remote: %s", loc.Refused[ghost])
	// No remote at all.
	sourcetest.Git(t, clone, "remote", "remove", "origin")
	r, err = source.OpenRepo(clone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LineIn(ghost, "pay/pay.go", 7); err == nil || !strings.Contains(err.Error(), "has no remotes to fetch it from: add the remote") {
		t.Fatalf("LineIn without remotes: %v", err)
	}
}

func TestRevisions(t *testing.T) {
	p := func(mod, rev string) fleet.Process { return fleet.Process{Module: mod, Revision: rev} }
	hosts := []fleet.HostEntry{
		{Name: "a", Profile: &fleet.Profile{Processes: []fleet.Process{p("example.com/shop", "bbb"), p("example.com/shop", "aaa"), p("example.com/other", "ccc"), p("example.com/shop", "")}}},
		{Name: "b", Profile: &fleet.Profile{Processes: []fleet.Process{p("example.com/shop", "aaa")}}},
		{Name: "c", Gone: true, Profile: &fleet.Profile{Processes: []fleet.Process{p("example.com/shop", "ddd")}}},
	}
	if got := source.Revisions(hosts, "example.com/shop"); strings.Join(got, ",") != "aaa,bbb" {
		t.Fatalf("Revisions = %v, want [aaa bbb]", got)
	}
}

// A module in a subdirectory of the repository: fleet paths are relative to
// the module, repository paths to the top.
func TestModuleInSubdirectory(t *testing.T) {
	dir := sourcetest.Init(t)
	a := sourcetest.Commit(t, dir, "A", map[string]string{"README": "top\n", "svc/go.mod": gomod, "svc/pay/old.go": "package pay\n\nfunc F() {\n\tprintln(1) // TRACE\n}\n"})
	if err := os.Remove(filepath.Join(dir, "svc", "pay", "old.go")); err != nil {
		t.Fatal(err)
	}
	sourcetest.Commit(t, dir, "B", map[string]string{"svc/pay/new.go": "package pay\n\n// F prints.\nfunc F() {\n\tprintln(1) // TRACE\n}\n"})
	file := filepath.Join(dir, "svc", "pay", "new.go")
	loc, err := source.LocateAt(file, 5, []string{a})
	if err != nil {
		t.Fatal(err)
	}
	if loc.Module != "example.com/shop" || loc.Path != "pay/new.go" || loc.Lines[a] != 4 || loc.Paths[a] != "pay/old.go" {
		t.Fatalf("LocateAt = %+v; want pay/new.go:5, and pay/old.go:4 in A", loc)
	}
	r, err := source.OpenRepo(file)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := source.NewWorkspace(filepath.Join(dir, "svc"))
	if err != nil {
		t.Fatal(err)
	}
	got, line, err := r.LocalHit(ws, "/src/svc/pay/old.go", 4, fleet.ProcessRef{Revision: a})
	if err != nil || got != file || line != 5 {
		t.Fatalf("LocalHit = %s:%d, %v; want %s:5", got, line, err, file)
	}
	// A dirty build's hit is taken as is.
	got, line, err = r.LocalHit(ws, "example.com/shop/pay/new.go", 4, fleet.ProcessRef{Revision: a, Modified: true})
	if err != nil || got != file || line != 4 {
		t.Fatalf("LocalHit of a dirty build = %s:%d, %v; want %s:4", got, line, err, file)
	}
}
