package source

import (
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// Revisions returns the revisions (vcs.revision) that the fleet's processes
// of module run, sorted and without repeats, from fleet Client.Hosts. With
// module empty, every process counts. Processes without a revision add
// nothing.
func Revisions(hosts []fleet.HostEntry, module string) []string {
	seen := make(map[string]bool)
	var revs []string
	for _, h := range hosts {
		if h.Gone || h.Profile == nil {
			continue
		}
		for _, p := range h.Profile.Processes {
			if p.Revision == "" || (module != "" && p.Module != module) || seen[p.Revision] {
				continue
			}
			seen[p.Revision] = true
			revs = append(revs, p.Revision)
		}
	}
	sort.Strings(revs)
	return revs
}

// LocateAt is Locate for a file that may be in a git checkout: it names the
// line for the fleet and maps it into each of revs (see Repo.Locate). Outside
// a git repository it is Locate.
func LocateAt(file string, line int, revs []string) (fleet.Location, error) {
	loc := Locate(file, line)
	if loc.Module == "" {
		return loc, nil
	}
	r, err := OpenRepo(file)
	if err != nil {
		return loc, nil // not in a git checkout: nothing to map
	}
	return r.Locate(file, line, revs)
}

// Locate names line of the checkout's file for the fleet, as the package
// function Locate does, and maps it into each revision of revs: Lines gets
// the line in each revision that has it, Paths the file's name in
// revisions where it had another, and Refused the reason for each revision
// where the line was changed or does not exist, or that could not be read
// (not in the repository, and fetching it failed). Revision is HEAD when
// the file has no uncommitted edits. The error is about the local file
// only; per-revision failures go to Refused.
func (r *Repo) Locate(file string, line int, revs []string) (fleet.Location, error) {
	loc := Locate(file, line)
	mod, modDir, _, ok := ModuleOf(file)
	if !ok {
		return loc, fmt.Errorf("%s is not inside a Go module (no go.mod above it)", file)
	}
	rel, err := r.Rel(file)
	if err != nil {
		return loc, err
	}
	modRel, err := r.Rel(modDir)
	if err != nil {
		return loc, err
	}
	if r.Clean(rel) {
		if head, err := r.Head(); err == nil {
			loc.Revision = head
		}
	}
	refuse := func(rev, why string) {
		if loc.Refused == nil {
			loc.Refused = make(map[string]string)
		}
		loc.Refused[rev] = why
	}
	for _, rev := range revs {
		n, err := r.LineIn(rev, rel, line)
		if err != nil {
			refuse(rev, err.Error())
			continue
		}
		if loc.Lines == nil {
			loc.Lines = make(map[string]int)
		}
		loc.Lines[rev] = n
		if p, err := r.PathIn(rev, rel); err == nil && p != rel {
			inMod, ok := cutDir(p, modRel)
			if !ok {
				delete(loc.Lines, rev)
				refuse(rev, fmt.Sprintf("in revision %s the file is %s, outside module %s", shortRev(rev), p, mod))
				continue
			}
			if loc.Paths == nil {
				loc.Paths = make(map[string]string)
			}
			loc.Paths[rev] = inMod
		}
	}
	return loc, nil
}

// cutDir returns p relative to dir ("." for the top).
func cutDir(p, dir string) (string, bool) {
	if dir == "." || dir == "" {
		return p, true
	}
	return strings.CutPrefix(p, dir+"/")
}

// LocalHit maps where a hit happened, a file as the process names it (its
// DWARF file name: an absolute build path, or module/path for -trimpath
// builds) and a line in the revision the process runs, to the checkout's
// file and line. Files renamed since that revision are followed. A process
// without a revision, or built from a tree with uncommitted changes, is
// taken as is: line is returned unchanged. A line that was changed or does
// not exist in the checkout is a *LineError.
func (r *Repo) LocalHit(ws *Workspace, remoteFile string, line int, proc fleet.ProcessRef) (string, int, error) {
	local, ok := ws.Local(remoteFile)
	var rel string
	if ok {
		var err error
		if rel, err = r.Rel(local); err != nil {
			return "", 0, err
		}
	} else {
		if proc.Revision == "" || proc.Modified {
			return "", 0, fmt.Errorf("no file of the workspace %s is %s", ws.Root, remoteFile)
		}
		old, err := r.fileIn(ws, proc.Revision, remoteFile)
		if err != nil {
			return "", 0, err
		}
		if rel, err = r.LocalPath(proc.Revision, old); err != nil {
			return "", 0, err
		}
		local = filepath.Join(r.root, filepath.FromSlash(rel))
	}
	if proc.Revision == "" || proc.Modified {
		return local, line, nil
	}
	n, err := r.LocalLine(proc.Revision, rel, line)
	if err != nil {
		return local, 0, err
	}
	return local, n, nil
}

// fileIn finds the repository path in revision rev of a file a process
// names remoteFile that the checkout no longer has under that name: the
// module path is replaced by the workspace's directory, or else the longest
// suffix of remoteFile that names a file in rev under the workspace wins.
func (r *Repo) fileIn(ws *Workspace, rev, remoteFile string) (string, error) {
	wsRel, err := r.Rel(ws.Root)
	if err != nil {
		return "", err
	}
	remoteFile = filepath.ToSlash(remoteFile)
	join := func(p string) string {
		if wsRel == "." {
			return p
		}
		return wsRel + "/" + p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	hash, err := r.resolve(rev)
	if err != nil {
		return "", err
	}
	exists := func(p string) bool {
		_, err := r.lines(hash, p)
		return err == nil
	}
	if ws.Module != "" {
		if inMod, ok := strings.CutPrefix(remoteFile, ws.Module+"/"); ok && exists(join(inMod)) {
			return join(inMod), nil
		}
	}
	parts := strings.Split(strings.TrimPrefix(remoteFile, "/"), "/")
	for i := range parts {
		if p := join(path.Join(parts[i:]...)); exists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no file of the workspace %s is %s, now or in revision %s", ws.Root, remoteFile, shortRev(hash.String()))
}

// Unmapped returns the revisions of revs that loc was not mapped into
// (neither in Lines nor in Refused): processes of those revisions trace
// Line with a warning. A client that watches the fleet (Client.Hosts)
// calls Repo.Locate again and re-declares when this is not empty, so that a
// canary started after the breakpoint was set gets its own line.
func Unmapped(loc fleet.Location, revs []string) []string {
	var out []string
	for _, rev := range revs {
		_, mapped := loc.Lines[rev]
		_, refused := loc.Refused[rev]
		if !mapped && !refused {
			out = append(out, rev)
		}
	}
	return out
}
