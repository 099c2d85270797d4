package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// parseLocation turns FILE:LINE into a fleet location (see source.Locate).
func parseLocation(arg string) (fleet.Location, error) {
	file, line, err := splitLocation(arg)
	if err != nil {
		return fleet.Location{}, err
	}
	if err := source.CheckLine(file, line); err != nil {
		return fleet.Location{}, usageError{err.Error()}
	}
	return source.Locate(file, line), nil
}

func splitLocation(arg string) (string, int, error) {
	i := strings.LastIndexByte(arg, ':')
	if i <= 0 {
		return "", 0, usageError{fmt.Sprintf("want FILE:LINE (for example internal/pay/charge.go:42), got %q", arg)}
	}
	line, err := strconv.Atoi(arg[i+1:])
	if err != nil || line <= 0 {
		return "", 0, usageError{fmt.Sprintf("%q: the line must be a positive number", arg)}
	}
	return arg[:i], line, nil
}

// checkout maps hits back to the local checkout's lines.
type checkout struct {
	repo *source.Repo
	ws   *source.Workspace

	// mu guards mapped.
	mu     sync.Mutex
	mapped fleet.Location // as last declared, once follow runs
}

func (c *checkout) setMapped(loc fleet.Location) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mapped = loc
}

// unmapped reports whether h ran in a revision the declared line was not
// mapped into yet: it was traced at the checkout's line number, which
// may be another line there, until follow maps it.
func (c *checkout) unmapped(h *fleet.Hit) bool {
	if c == nil || h.Process.Revision == "" || h.Process.Modified {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	followed := c.mapped.Revision != "" || len(c.mapped.Lines) > 0 || len(c.mapped.Refused) > 0
	return followed && !c.mapped.Maps(h.Process.Revision)
}

// local returns the checkout's file and line of a hit made in another
// revision, or ok false when it is the same line (or cannot be mapped).
func (c *checkout) local(h *fleet.Hit) (string, int, bool) {
	if c == nil || h.Process.Revision == "" || h.Process.Modified {
		return "", 0, false
	}
	file, line, err := c.repo.LocalHit(c.ws, h.File, h.Line, h.Process)
	if err != nil || line == h.Line && strings.HasSuffix(filepath.ToSlash(h.File), filepath.ToSlash(mustRel(c.ws.Root, file))) {
		return "", 0, false
	}
	return file, line, true
}

func mustRel(dir, file string) string {
	if r, err := filepath.Rel(dir, file); err == nil {
		return r
	}
	return file
}

// syncLocation maps a FILE:LINE in a git checkout into every revision of the
// file's module that runs in the fleet, as the debug adapter and the
// language server do (see source.Resolve), and says on w what it found.
// revision, when not empty, is the revision processes without
// vcs.revision run (--revision). A location outside a checkout is
// returned as is, with a nil checkout.
func syncLocation(ctx context.Context, c *fleet.Client, arg string, loc fleet.Location, revision string, w io.Writer) (fleet.Location, *checkout, error) {
	if loc.Module == "" {
		return loc, nil, nil // a path suffix, not a local file
	}
	file, line, err := splitLocation(arg)
	if err != nil {
		return loc, nil, err
	}
	repo, err := source.OpenRepo(file)
	if err != nil {
		return loc, nil, nil // not in a git checkout: nothing to map
	}
	_, modDir, _, _ := source.ModuleOf(file)
	ws, err := source.NewWorkspace(modDir)
	if err != nil {
		return loc, nil, err
	}
	// An agent that does not answer at once costs its revision a mapping
	// (its processes trace the checkout's line, with a warning), not the
	// whole command.
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res := source.Resolve(hctx, c, repo, []source.Line{{File: file, Line: line, Revision: revision}})
	if res.FleetErr != nil {
		fmt.Fprintf(w, "riptrace: %v; tracing line %d of the checkout everywhere\n", res.FleetErr, line)
	}
	if res.Errs[0] != nil {
		return loc, nil, res.Errs[0]
	}
	synced := res.Locations[0]
	for _, rev := range sortedKeys(synced.Lines) {
		p := synced.Path
		if q, ok := synced.Paths[rev]; ok {
			p = q
		}
		fmt.Fprintf(w, "riptrace: revision %s runs in the fleet: tracing %s:%d there\n", fleet.ShortRevision(rev), p, synced.Lines[rev])
	}
	for _, rev := range sortedKeys(synced.Refused) {
		fmt.Fprintf(w, "riptrace: revision %s runs in the fleet: not traced there: %s\n", fleet.ShortRevision(rev), synced.Refused[rev])
	}
	sayBuilds(w, synced.Builds, nil)
	return synced, &checkout{repo: repo, ws: ws}, nil
}

// sayBuilds says on w what was found of each build without vcs.revision
// in builds that known does not have.
func sayBuilds(w io.Writer, builds, known map[string]fleet.BuildRevision) {
	for _, build := range sortedKeys(builds) {
		b := builds[build]
		if _, ok := known[build]; ok {
			continue
		}
		if b.Refused != "" {
			fmt.Fprintf(w, "riptrace: build %s carries no vcs.revision: not traced there: %s\n", shortBuild(build), b.Refused)
			continue
		}
		fmt.Fprintf(w, "riptrace: build %s carries no vcs.revision: it runs revision %s (%s)\n", shortBuild(build), fleet.ShortRevision(b.Revision), describeHow(b.How))
		if b.Note != "" {
			fmt.Fprintf(w, "riptrace: warning: %s\n", b.Note)
		}
	}
}

// shortBuild abbreviates a Go build ID (four parts joined by '/') to its
// last part's start, enough to tell builds apart in messages.
func shortBuild(id string) string {
	id = id[strings.LastIndexByte(id, '/')+1:]
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// describeHow says in words how a build's revision was found
// (fleet.BuildRevision.How).
func describeHow(how string) string {
	switch {
	case how == "override":
		return "as --revision says"
	case how == "fingerprint":
		return "its debug info matches that version of the file"
	case strings.HasPrefix(how, "stamp "):
		return "its version string " + strings.TrimPrefix(how, "stamp ") + " names it"
	}
	return how
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// follow keeps spec's per-revision lines current as revisions of its
// module start in the fleet (source.FollowRevisions), declaring it again
// under lease when its mapping changes, and says so on w. arg is the
// FILE:LINE of the checkout the spec was declared from, revision the
// --revision flag.
func follow(ctx context.Context, c *fleet.Client, lease *fleet.Lease, spec fleet.Spec, arg, revision string, local *checkout, w io.Writer) {
	local.setMapped(spec.Location)
	file, line, err := splitLocation(arg)
	if err != nil {
		return
	}
	hw, err := c.WatchHosts(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(w, "riptrace: %v; revisions that start from now on are traced at the checkout's line\n", err)
		return
	}
	defer hw.Stop()
	var known []string
	for rev := range spec.Location.Lines {
		known = append(known, rev)
	}
	for rev := range spec.Location.Refused {
		known = append(known, rev)
	}
	for build := range spec.Location.Builds {
		known = append(known, "build:"+build)
	}
	source.FollowRevisions(ctx, hw, spec.Location.Module, known, func([]string) {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res := source.Resolve(hctx, hw, local.repo, []source.Line{{File: file, Line: line, Revision: revision}})
		cancel()
		if res.Errs[0] != nil {
			fmt.Fprintf(w, "riptrace: mapping the line into the revisions that started: %v\n", res.Errs[0])
			return
		}
		loc := res.Locations[0]
		// A build whose agent did not answer in time keeps what was found.
		for build, b := range spec.Location.Builds {
			if _, ok := loc.Builds[build]; !ok {
				if loc.Builds == nil {
					loc.Builds = make(map[string]fleet.BuildRevision)
				}
				loc.Builds[build] = b
			}
		}
		if reflect.DeepEqual(loc, spec.Location) {
			return
		}
		for _, rev := range sortedKeys(loc.Lines) {
			if _, ok := spec.Location.Lines[rev]; !ok {
				p := loc.Path
				if q, ok := loc.Paths[rev]; ok {
					p = q
				}
				fmt.Fprintf(w, "riptrace: revision %s started in the fleet: tracing %s:%d there\n", fleet.ShortRevision(rev), p, loc.Lines[rev])
			}
		}
		for _, rev := range sortedKeys(loc.Refused) {
			if _, ok := spec.Location.Refused[rev]; !ok {
				fmt.Fprintf(w, "riptrace: revision %s started in the fleet: not traced there: %s\n", fleet.ShortRevision(rev), loc.Refused[rev])
			}
		}
		sayBuilds(w, loc.Builds, spec.Location.Builds)
		spec.Location = loc
		local.setMapped(loc)
		if err := lease.Declare(ctx, &spec); err != nil && ctx.Err() == nil {
			fmt.Fprintf(w, "riptrace: declaring the line mapped into the new revisions: %v\n", err)
		}
	})
}
