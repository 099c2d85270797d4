package source

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/riptrace/riptrace/fleet"
)

// Fleet is what Resolve asks of the fleet: fleet.Client's Hosts, whose
// profiles list the revisions the processes run, and Fingerprint, which
// asks a host what the executables without vcs.revision say of a file.
type Fleet interface {
	Hosts(ctx context.Context) ([]fleet.HostEntry, error)
	Fingerprint(ctx context.Context, host string, file fleet.Location) (*fleet.Profile, error)
}

// Line is a line of a local file, 1-based.
type Line struct {
	File string
	Line int
	// Revision, when not empty, is the revision the user says the
	// processes without vcs.revision run (riptrace trace --revision, the
	// debug adapter's "revision" attribute, the language server's
	// riptrace.revision setting): it is not looked for.
	Revision string
}

// Resolution is where the lines given to Resolve run in the fleet.
type Resolution struct {
	// Locations holds, for each line in order, the line named for the
	// fleet (Locate) and, for a file in a git checkout, mapped into the
	// revisions the fleet runs (Repo.Locate).
	Locations []fleet.Location
	// Errs holds, for each line, why its local file could not be mapped;
	// its location is then mapped into no revision.
	Errs []error
	// FleetErr says why the fleet could not tell which revisions run: the
	// locations are mapped into none, and processes trace the checkout's
	// line with a warning.
	FleetErr error
}

// Resolve names lines of local files for the fleet and maps those in a git
// checkout into every revision of their module that the fleet runs now,
// including the revisions found for builds without vcs.revision (see
// resolveBuilds). It asks the fleet once whatever the number of lines, and
// only when one of them is in a Go module; hosts that run builds without
// vcs.revision are asked once more per file, for its fingerprint. ctx bounds that question: agents that answer too
// late cost their revisions a mapping, not the request.
//
// repo is the checkout's repository, for a caller that keeps it open
// across requests; nil opens the repository around each file.
func Resolve(ctx context.Context, fl Fleet, repo *Repo, lines []Line) Resolution {
	res := Resolution{Locations: make([]fleet.Location, len(lines)), Errs: make([]error, len(lines))}
	var hosts []fleet.HostEntry
	asked := false
	repos := map[string]*Repo{} // by directory, when repo is nil
	// What was found of the builds without vcs.revision, by file and
	// override: the hosts running them are asked once per file.
	buildsOf := map[string]map[string]fleet.BuildRevision{}
	for i, l := range lines {
		loc := Locate(l.File, l.Line)
		res.Locations[i] = loc
		if loc.Module == "" {
			continue // a path suffix, not a file of a module
		}
		r := repo
		if r == nil {
			dir := filepath.Dir(l.File)
			var ok bool
			if r, ok = repos[dir]; !ok {
				r, _ = OpenRepo(l.File)
				repos[dir] = r
			}
			if r == nil {
				continue // not in a git checkout: nothing to map
			}
		}
		if !asked {
			asked = true
			var err error
			if hosts, err = fl.Hosts(ctx); err != nil {
				res.FleetErr = fmt.Errorf("asking the fleet which revisions run: %w", err)
			}
		}
		key := l.File + "\x00" + l.Revision
		builds, ok := buildsOf[key]
		if !ok {
			builds = resolveBuilds(ctx, fl, r, hosts, l, loc)
			buildsOf[key] = builds
		}
		revs := Revisions(hosts, loc.Module)
		for _, b := range builds {
			if b.Revision != "" && !slices.Contains(revs, b.Revision) {
				revs = append(revs, b.Revision)
			}
		}
		synced, err := r.Locate(l.File, l.Line, revs)
		if err != nil {
			res.Errs[i] = fmt.Errorf("mapping %s:%d into the fleet's revisions: %w", l.File, l.Line, err)
			continue
		}
		synced.Builds = builds
		res.Locations[i] = synced
	}
	return res
}

// resolveBuilds finds the revision of each executable of loc's module that
// carries no vcs.revision (fleet.Process.Build): the one the user named
// (l.Revision), else the one its -ldflags -X version strings name, else
// the newest whose version of the file matches what its DWARF says of it
// (Repo.MatchFingerprint). An executable matched by none is refused, with
// the reason and what to do. Agents that do not answer in time leave their
// builds out: they trace the checkout's line with a warning, as before.
func resolveBuilds(ctx context.Context, fl Fleet, r *Repo, hosts []fleet.HostEntry, l Line, loc fleet.Location) map[string]fleet.BuildRevision {
	out := make(map[string]fleet.BuildRevision)
	var ask []string // hosts with builds left to fingerprint
	for _, h := range hosts {
		if h.Gone || h.Profile == nil {
			continue
		}
		asked := false
		for _, p := range h.Profile.Processes {
			if p.Revision != "" || p.Build == "" || p.Module != loc.Module {
				continue
			}
			if _, done := out[p.Build]; done {
				continue
			}
			if l.Revision != "" {
				if full, err := r.Resolve(l.Revision); err != nil {
					out[p.Build] = fleet.BuildRevision{Refused: fmt.Sprintf("the revision given for processes without vcs.revision, %s, cannot be read: %v", l.Revision, err)}
				} else {
					out[p.Build] = fleet.BuildRevision{Revision: full, How: "override"}
				}
				continue
			}
			if rev, name := r.StampRevision(p.Stamps); rev != "" {
				out[p.Build] = fleet.BuildRevision{Revision: rev, How: "stamp " + name}
				continue
			}
			if !asked {
				asked = true
				ask = append(ask, h.Name)
			}
		}
	}
	if len(ask) == 0 {
		return nonEmpty(out)
	}
	rel, err := r.Rel(l.File)
	if err != nil {
		return nonEmpty(out)
	}
	// One question per host, all at once: each answers with one
	// fingerprint per build. The file's history is read meanwhile.
	profiles := make([]*fleet.Profile, len(ask))
	var wg sync.WaitGroup
	wg.Go(func() { r.WarmHistory(rel) })
	for i, host := range ask {
		wg.Go(func() { profiles[i], _ = fl.Fingerprint(ctx, host, loc) })
	}
	wg.Wait()
	fps := make(map[string]*fleet.Fingerprint)
	for _, p := range profiles {
		if p == nil {
			continue
		}
		for _, proc := range p.Processes {
			if proc.Fingerprint != nil && proc.Build != "" && proc.Revision == "" {
				fps[proc.Build] = proc.Fingerprint
			}
		}
	}
	builds := make([]string, 0, len(fps))
	for b := range fps {
		builds = append(builds, b)
	}
	sort.Strings(builds)
	for _, b := range builds {
		if _, done := out[b]; done {
			continue
		}
		m, err := r.MatchFingerprint(rel, fps[b])
		var nm *NoMatchError
		switch {
		case errors.As(err, &nm):
			out[b] = fleet.BuildRevision{Refused: nm.Error() + ". Commit the code it was built from, or name its revision: --revision REV, or the \"revision\" setting in an editor"}
		case err != nil:
			out[b] = fleet.BuildRevision{Refused: err.Error()}
		case m.Versions > 1:
			out[b] = fleet.BuildRevision{Revision: m.Revision, How: "fingerprint", Note: fmt.Sprintf("the process carries no vcs.revision and %d committed versions of %s match its code: traced as in the newest, revision %s", m.Versions, rel, fleet.ShortRevision(m.Revision))}
		default:
			out[b] = fleet.BuildRevision{Revision: m.Revision, How: "fingerprint"}
		}
	}
	return nonEmpty(out)
}

func nonEmpty[K comparable, V any](m map[K]V) map[K]V {
	if len(m) == 0 {
		return nil
	}
	return m
}
