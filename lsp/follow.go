package lsp

import (
	"context"
	"reflect"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// toggledLine is a tracepoint toggled from the editor: the checkout's line
// and the spec as last declared.
type toggledLine struct {
	file     string
	line     int
	revision string // the revision setting it was declared with
	spec     fleet.Spec
}

// followRevisions keeps the tracepoints toggled through lease mapped into
// every revision the fleet runs, as revisions start (see
// source.FollowRevisions): one toggled before an agent reported a process,
// or before a deploy, would otherwise be traced there at the checkout's
// line number. It returns when ctx ends.
func (s *server) followRevisions(ctx context.Context, c *fleet.Client, lease *fleet.Lease) {
	hw, err := c.WatchHosts(ctx, s.log)
	if err != nil {
		s.log.Warn("following the fleet's revisions", "err", err)
		return
	}
	defer hw.Stop()
	source.FollowRevisions(ctx, hw, "", nil, func([]string) { s.remap(ctx, hw, lease) })
}

// remap maps the toggled lines into the revisions the fleet runs now and
// declares again those whose mapping changed.
func (s *server) remap(ctx context.Context, fl source.Fleet, lease *fleet.Lease) {
	s.declMu.Lock()
	defer s.declMu.Unlock()
	s.mu.Lock()
	var todo []toggledLine
	for _, t := range s.toggled {
		todo = append(todo, t)
	}
	s.mu.Unlock()
	for _, t := range todo {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r := source.Resolve(hctx, fl, nil, []source.Line{{File: t.file, Line: t.line, Revision: t.revision}})
		cancel()
		if r.Errs[0] != nil || r.FleetErr != nil || reflect.DeepEqual(r.Locations[0], t.spec.Location) {
			continue
		}
		t.spec.Location = r.Locations[0]
		if err := lease.Declare(ctx, &t.spec); err != nil {
			s.log.Warn("declaring a toggled line mapped into new revisions", "tracepoint", t.spec.ID, "err", err)
			continue
		}
		s.mu.Lock()
		s.toggled[t.spec.ID] = t
		s.mu.Unlock()
	}
}
