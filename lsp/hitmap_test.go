package lsp

import (
	"path/filepath"
	"testing"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
	"github.com/riptrace/riptrace/source/sourcetest"
)

// TestHitMapperRevisions: a hit from a process running an older commit lands
// on the checkout's line for it; a line the checkout no longer has gets no
// lens; a dirty build is taken as is.
func TestHitMapperRevisions(t *testing.T) {
	repo := sourcetest.Init(t)
	sourcetest.Write(t, repo, "go.mod", "module example.com/revs\n")
	a := sourcetest.Commit(t, repo, "A", map[string]string{"main.go": "package main\n\nfunc f() {\n\tx := 1\n\t_ = x\n}\n"})
	sourcetest.Commit(t, repo, "B", map[string]string{"main.go": "package main\n\n// one\n// two\nfunc f() {\n\tx := 2\n\t_ = x\n}\n"})
	ws, err := source.NewWorkspace(repo)
	if err != nil {
		t.Fatal(err)
	}
	m := newHitMapper(ws)
	if m.repo == nil {
		t.Fatal("the workspace's git repository was not found")
	}
	remote := "/build/revs/main.go" // built in another directory
	for _, tc := range []struct {
		name   string
		line   int
		proc   fleet.ProcessRef
		want   int
		wantOK bool
	}{
		{"moved down by two", 5, fleet.ProcessRef{Revision: a}, 7, true},
		{"changed since", 4, fleet.ProcessRef{Revision: a}, 0, false},
		{"dirty build as is", 5, fleet.ProcessRef{Revision: a, Modified: true}, 5, true},
		{"no revision as is", 5, fleet.ProcessRef{}, 5, true},
	} {
		h := &fleet.Hit{File: remote, Line: tc.line, Process: tc.proc}
		file, line, ok := m.local(h)
		if ok != tc.wantOK || (ok && (line != tc.want || file != filepath.Join(repo, "main.go"))) {
			t.Errorf("%s: hit at %s:%d maps to %s:%d %v, want line %d %v", tc.name, remote, tc.line, file, line, ok, tc.want, tc.wantOK)
		}
	}
}
