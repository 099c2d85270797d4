package source

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/riptrace/riptrace/fleet"
)

// Fleet is what Resolve asks of the fleet: fleet.Client's Hosts, whose
// profiles list the revisions the processes run.
type Fleet interface {
	Hosts(ctx context.Context) ([]fleet.HostEntry, error)
}

// Line is a line of a local file, 1-based.
type Line struct {
	File string
	Line int
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
// checkout into every revision of their module that the fleet runs now. It
// asks the fleet once whatever the number of lines, and only when one of
// them is in a Go module. ctx bounds that question: agents that answer too
// late cost their revisions a mapping, not the request.
//
// repo is the checkout's repository, for a caller that keeps it open
// across requests; nil opens the repository around each file.
func Resolve(ctx context.Context, fl Fleet, repo *Repo, lines []Line) Resolution {
	res := Resolution{Locations: make([]fleet.Location, len(lines)), Errs: make([]error, len(lines))}
	var hosts []fleet.HostEntry
	asked := false
	repos := map[string]*Repo{} // by directory, when repo is nil
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
		synced, err := r.Locate(l.File, l.Line, Revisions(hosts, loc.Module))
		if err != nil {
			res.Errs[i] = fmt.Errorf("mapping %s:%d into the fleet's revisions: %w", l.File, l.Line, err)
			continue
		}
		res.Locations[i] = synced
	}
	return res
}
