package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
// A location outside a checkout is returned as is, with a nil checkout.
func syncLocation(ctx context.Context, c *fleet.Client, arg string, loc fleet.Location, w io.Writer) (fleet.Location, *checkout, error) {
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
	res := source.Resolve(hctx, c, repo, []source.Line{{File: file, Line: line}})
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
	return synced, &checkout{repo: repo, ws: ws}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
