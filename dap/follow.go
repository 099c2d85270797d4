package dap

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// followRevisions keeps the session's breakpoints in a git checkout mapped
// into every revision the fleet runs, as revisions start: a breakpoint set
// before an agent reported a process, or before a new revision was
// deployed, would otherwise be traced there at the checkout's line number
// (see source.FollowRevisions). It runs until the session ends.
func (ss *session) followRevisions() {
	if ss.repo == nil {
		return
	}
	// The session's host watch, which the threads view reads too: one
	// cache of profiles, so that neither asks an agent the other asked.
	source.FollowRevisions(ss.ctx, ss.hosts, "", nil, func([]string) { ss.remap() })
}

// remap maps the session's breakpoints into the revisions the fleet runs
// now and declares again those whose mapping changed, saying so in the
// breakpoint's message.
func (ss *session) remap() {
	ss.declMu.Lock()
	defer ss.declMu.Unlock()
	ss.mu.Lock()
	var bs []*breakpoint
	for _, b := range ss.byTracepoint {
		if b.declared.Module != "" {
			bs = append(bs, b)
		}
	}
	ss.mu.Unlock()
	if len(bs) == 0 {
		return
	}
	locs := ss.locate(bs)
	ctx, cancel := context.WithTimeout(ss.ctx, 10*time.Second)
	defer cancel()
	for i, b := range bs {
		if reflect.DeepEqual(locs[i], b.declared) {
			continue
		}
		if err := ss.owner().Declare(ctx, ss.spec(b, locs[i])); err != nil {
			ss.srv.opts.Log.Warn("declaring a breakpoint mapped into new revisions", "tracepoint", b.tracepoint, "err", err)
			continue
		}
		for rev, line := range locs[i].Lines {
			if _, ok := b.declared.Lines[rev]; !ok {
				ss.output("console", fmt.Sprintf("riptrace: revision %s started in the fleet: breakpoint %d traces line %d there\n", fleet.ShortRevision(rev), b.id, line))
			}
		}
		b.declared = locs[i]
	}
}
