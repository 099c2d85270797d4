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

// The version strings an executable may be linked with, resolved in the
// checkout's repository; nothing that names no commit here is taken.
func TestStampRevision(t *testing.T) {
	dir := sourcetest.Init(t)
	a := sourcetest.Commit(t, dir, "A", map[string]string{"go.mod": gomod})
	sourcetest.Git(t, dir, "tag", "v1.0.0")
	sourcetest.Git(t, dir, "tag", "-a", "-m", "annotated", "v1.0.1")
	b := sourcetest.Commit(t, dir, "B", map[string]string{"x.go": "package x\n"})
	r, err := source.OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		stamps map[string]string
		rev    string
		from   string
	}{
		{"full hash", map[string]string{"main.commit": b}, b, "main.commit"},
		{"short hash, upper case", map[string]string{"main.GitCommit": strings.ToUpper(a[:7])}, a, "main.GitCommit"},
		{"tag", map[string]string{"main.version": "v1.0.0"}, a, "main.version"},
		{"annotated tag", map[string]string{"main.version": "v1.0.1"}, a, "main.version"},
		{"git describe", map[string]string{"main.version": "v1.0.0-1-g" + b[:9]}, b, "main.version"},
		{"a commit before a version", map[string]string{"main.version": "v1.0.0", "x/version.Revision": b}, b, "x/version.Revision"},
		{"dirty describe", map[string]string{"main.version": "v1.0.0-1-g" + b[:9] + "-dirty"}, "", ""},
		{"not here", map[string]string{"main.commit": "abcdef0123456", "main.version": "v9"}, "", ""},
		{"a branch is not a version", map[string]string{"main.version": "main"}, "", ""},
		{"HEAD is not a version", map[string]string{"main.version": "HEAD"}, "", ""},
		{"too short", map[string]string{"main.commit": a[:6]}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rev, from := r.StampRevision(tc.stamps)
			if rev != tc.rev || from != tc.from {
				t.Fatalf("StampRevision(%v) = %q, %q; want %q, %q", tc.stamps, rev, from, tc.rev, tc.from)
			}
		})
	}
}

// A fingerprint matched against a file's history: its functions must be
// declared at their lines, its lines must have code.
func TestMatchFingerprint(t *testing.T) {
	dir := sourcetest.Init(t)
	v1 := "package pay\n\nfunc Charge(n int) int {\n\treturn n * 2\n}\n"
	v2 := "package pay\n\n// Charge doubles.\nfunc Charge(n int) int {\n\treturn n * 2\n}\n\nfunc (s *Svc[T]) Refund() { go func() {}() }\n\ntype Svc[T any] struct{}\n"
	v3 := "package pay\n\n// Charge doubles n.\nfunc Charge(n int) int {\n\treturn n * 2\n}\n\nfunc (s *Svc[T]) Refund() { go func() {}() }\n\ntype Svc[T any] struct{}\n"
	revs := map[string]string{}
	for _, c := range []struct{ name, text string }{{"1", v1}, {"2", v2}, {"3", v3}} {
		revs[c.name] = sourcetest.Commit(t, dir, c.name, map[string]string{"go.mod": gomod, "pay/pay.go": c.text})
	}
	r, err := source.OpenRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		fp       fleet.Fingerprint
		rev      string
		versions int
		err      string
	}{
		{"first version", fleet.Fingerprint{Funcs: []fleet.FuncDecl{{Name: "example.com/shop/pay.Charge", Line: 3}}, Lines: []int{3, 4}}, "1", 1, ""},
		{"the same code twice: the newest", fleet.Fingerprint{Funcs: []fleet.FuncDecl{{Name: "example.com/shop/pay.Charge", Line: 4}, {Name: "example.com/shop/pay.(*Svc[go.shape.int]).Refund", Line: 8}, {Name: "example.com/shop/pay.(*Svc[go.shape.int]).Refund.func1", Line: 8}}, Lines: []int{4, 5, 8}}, "3", 2, ""},
		{"a line without code", fleet.Fingerprint{Funcs: []fleet.FuncDecl{{Name: "example.com/shop/pay.Charge", Line: 4}}, Lines: []int{3, 5}}, "", 0, "matches no committed version"},
		{"a method at another line", fleet.Fingerprint{Funcs: []fleet.FuncDecl{{Name: "example.com/shop/pay.(*Svc).Refund", Line: 9}}}, "", 0, "matches no committed version"},
		{"truncated", fleet.Fingerprint{Lines: []int{3}, Truncated: true}, "", 0, "too large"},
		{"no code", fleet.Fingerprint{}, "", 0, "has no code of it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := r.MatchFingerprint("pay/pay.go", &tc.fp)
			if tc.err != "" {
				var nm *source.NoMatchError
				if !errors.As(err, &nm) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("MatchFingerprint = %+v, %v; want a NoMatchError saying %q", m, err, tc.err)
				}
				return
			}
			if err != nil || m.Revision != revs[tc.rev] || m.Versions != tc.versions {
				t.Fatalf("MatchFingerprint = %+v, %v; want revision %s, %d versions", m, err, tc.rev, tc.versions)
			}
		})
	}
}

// The agent's side: a process without vcs.revision gets what the client
// found of its build.
func TestLocationForProcess(t *testing.T) {
	const found, head = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	loc := fleet.Location{
		Module: "example.com/shop", Path: "pay/pay.go", Line: 10, Revision: head,
		Lines: map[string]int{head: 10, found: 7},
		Builds: map[string]fleet.BuildRevision{
			"b1": {Revision: found, How: "fingerprint"},
			"b2": {Revision: found, How: "fingerprint", Note: "2 committed versions match"},
			"b3": {Refused: "the running code of pay/pay.go matches no committed version"},
		},
	}
	for _, tc := range []struct {
		name    string
		proc    fleet.Process
		line    int
		warning string
		code    string
	}{
		{"found", fleet.Process{Build: "b1"}, 7, "", ""},
		{"found, with a note", fleet.Process{Build: "b2"}, 7, "2 committed versions match", ""},
		{"refused", fleet.Process{Build: "b3"}, 0, "", fleet.CodeNoRevision},
		{"not resolved: as before", fleet.Process{Build: "b4"}, 10, "carries no vcs.revision", ""},
		{"a revision of its own wins", fleet.Process{Build: "b3", Revision: head}, 10, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, warning, err := loc.ForProcess(&tc.proc)
			if tc.code != "" {
				if err == nil || err.Code != tc.code {
					t.Fatalf("ForProcess = %+v, %v; want %s", got, err, tc.code)
				}
				return
			}
			if err != nil || got.Line != tc.line || (tc.warning == "") != (warning == "") || !strings.Contains(warning, tc.warning) {
				t.Fatalf("ForProcess = line %d, %q, %v; want line %d, warning %q", got.Line, warning, err, tc.line, tc.warning)
			}
		})
	}
	if loc.BuildRevision("b1") != found || loc.BuildRevision("") != "" {
		t.Error("BuildRevision does not give the revision found")
	}
	s := fleet.Spec{ID: "t", Location: fleet.Location{Path: "a.go", Line: 1, Builds: map[string]fleet.BuildRevision{"b": {}}}}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "either a revision or a reason") {
		t.Errorf("Validate of a build entry with neither = %v", err)
	}
}

// A file's history searched once is kept in the user's cache: another
// command from the checkout reads it back, until a reference moves.
func TestHistoryCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	dir := sourcetest.Init(t)
	v1 := "package pay\n\nfunc Charge(n int) int {\n\treturn n * 2\n}\n"
	v2 := "package pay\n\n// Charge doubles.\nfunc Charge(n int) int {\n\treturn n * 2\n}\n"
	c1 := sourcetest.Commit(t, dir, "1", map[string]string{"go.mod": gomod, "pay/pay.go": v1})
	c2 := sourcetest.Commit(t, dir, "2", map[string]string{"pay/pay.go": v2})
	fp := fleet.Fingerprint{Funcs: []fleet.FuncDecl{{Name: "example.com/shop/pay.Charge", Line: 3}}, Lines: []int{3, 4}}
	match := func() string {
		t.Helper()
		r, err := source.OpenRepo(dir) // a command of its own
		if err != nil {
			t.Fatal(err)
		}
		m, err := r.MatchFingerprint("pay/pay.go", &fp)
		if err != nil {
			t.Fatal(err)
		}
		return m.Revision
	}
	if got := match(); got != c1 {
		t.Fatalf("matched %s, want %s", got, c1)
	}
	kept, err := filepath.Glob(filepath.Join(cache, "riptrace", "history", "*.json"))
	if err != nil || len(kept) != 1 {
		t.Fatalf("histories kept: %v, %v; want one", kept, err)
	}
	// What is kept is what is read: a history altered in the cache
	// shows, as long as the references stay.
	b, err := os.ReadFile(kept[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept[0], []byte(strings.ReplaceAll(string(b), c1, c2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := match(); got != c2 {
		t.Fatalf("matched %s with the history altered in the cache, want %s: the cache was not read", got, c2)
	}
	// A new commit moves the references: searched again.
	sourcetest.Commit(t, dir, "3", map[string]string{"README": "x\n"})
	if got := match(); got != c1 {
		t.Fatalf("matched %s after a new commit, want %s: the cache outlived its references", got, c1)
	}
}
