// Package source maps between files in a local checkout and the locations
// the fleet speaks of. The CLI, the debug adapter and the language server all
// use it, so that they agree on every line.
//
// Locally, a file is named by the module it belongs to (the go.mod above it)
// and its path inside that module: that names the same file in a process
// built in another directory, in a container or with -trimpath. Remotely, a
// hit names a file as the process's DWARF does: an absolute build path, or
// module path + path in module for -trimpath builds; Workspace.Local maps it
// back.
//
// Processes may run other revisions than the checkout (see docs/DESIGN.md,
// "Source mapping"). [Resolve] is what every front end calls to trace local
// lines: it asks the fleet once which revisions run, and names each line
// for the fleet mapped into them. Processes whose executable carries no
// vcs.revision get one too, per build: the revision the user names, else
// one their -ldflags -X version strings name ([Repo.StampRevision]), else
// the newest commit whose version of the file matches the executable's
// DWARF fingerprint of it ([Repo.MatchFingerprint]; the file's history is
// kept in the user's cache directory per state of the references); none
// refuses the line there (fleet.Location.Builds). [Repo] is the checkout's git repository:
// [Repo.Locate] names a local line for the fleet and maps it into each
// revision that runs there ([Revisions] lists them from fleet
// Client.Hosts), filling the location's per-revision Lines, Paths and
// Refused; [Repo.LocalHit] maps a hit's file and line in its process's
// revision back to the checkout. [LocateFunction] finds a function by
// name in the checkout, for function breakpoints.
//
// Underneath, [Repo.LineIn] and [Repo.LocalLine] map one line through a
// line diff ([LineMap]) of the file between the checkout (with its
// uncommitted edits) and the revision, following renames and fetching
// revisions the repository lacks from its remotes.
package source

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/riptrace/riptrace/fleet"
)

// ModuleOf finds the go.mod above file and returns the module path, the
// module's directory, and file's slash path inside the module.
func ModuleOf(file string) (module, dir, rel string, ok bool) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", "", "", false
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if mod := ModulePath(filepath.Join(dir, "go.mod")); mod != "" {
			r, err := filepath.Rel(dir, abs)
			if err != nil {
				return "", "", "", false
			}
			return mod, dir, filepath.ToSlash(r), true
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", "", "", false
		}
	}
}

// ModulePath reads the module path from a go.mod file, or returns "".
func ModulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// Locate names a local file and line for the fleet: module path + path in
// module when the file is inside a Go module, otherwise the path as given,
// matched as a suffix.
func Locate(file string, line int) fleet.Location {
	if _, err := os.Stat(file); err == nil {
		if mod, _, rel, ok := ModuleOf(file); ok {
			return fleet.Location{Module: mod, Path: rel, Line: line}
		}
	}
	return fleet.Location{Path: filepath.ToSlash(file), Line: line}
}

// CheckLine refuses a line past the end of a local file, before anything is
// declared: no revision can have code there. A file that is not local (a
// path suffix for the fleet to match) is not checked.
func CheckLine(file string, line int) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	if n := len(splitLines(b)); line > n {
		return fmt.Errorf("%s has %d lines, so line %d is past its end. Pick a line of the file", file, n, line)
	}
	return nil
}

// Workspace maps files named by processes back to files under a local root.
type Workspace struct {
	Root   string // absolute directory
	Module string // module path of Root's go.mod, if any

	once   sync.Once
	byBase map[string][]string // base name → slash paths relative to Root
}

// NewWorkspace returns the workspace rooted at dir.
func NewWorkspace(dir string) (*Workspace, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &Workspace{Root: abs, Module: ModulePath(filepath.Join(abs, "go.mod"))}, nil
}

// Local returns the local file a process's file name refers to. A name
// inside the workspace's module (module/path, as -trimpath writes it) maps
// directly; otherwise the longest suffix on whole path elements shared with
// exactly one workspace file wins. Files of other modules (the standard
// library, dependencies) are not in the workspace: ok is false.
func (w *Workspace) Local(remote string) (string, bool) {
	remote = filepath.ToSlash(remote)
	if w.Module != "" {
		if rel, ok := strings.CutPrefix(remote, w.Module+"/"); ok {
			p := filepath.Join(w.Root, filepath.FromSlash(rel))
			if _, err := os.Stat(p); err == nil {
				return p, true
			}
		}
	}
	if strings.HasPrefix(remote, w.Root+"/") {
		if _, err := os.Stat(remote); err == nil {
			return remote, true
		}
	}
	w.once.Do(w.index)
	best, bestLen, tie := "", 0, false
	for _, rel := range w.byBase[path.Base(remote)] {
		n := sharedSuffix(rel, remote)
		switch {
		case n > bestLen:
			best, bestLen, tie = rel, n, false
		case n == bestLen:
			tie = true
		}
	}
	if best == "" || tie {
		return "", false
	}
	return filepath.Join(w.Root, filepath.FromSlash(best)), true
}

// sharedSuffix counts the trailing path elements a and b share.
func sharedSuffix(a, b string) int {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	n := 0
	for n < len(as) && n < len(bs) && as[len(as)-1-n] == bs[len(bs)-1-n] {
		n++
	}
	return n
}

// index lists the workspace's Go files by base name, skipping the
// directories the go command skips.
func (w *Workspace) index() {
	w.byBase = make(map[string][]string)
	filepath.WalkDir(w.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if p != w.Root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			rel, _ := filepath.Rel(w.Root, p)
			w.byBase[name] = append(w.byBase[name], filepath.ToSlash(rel))
		}
		return nil
	})
}
