package source

import (
	"context"
	"slices"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// Watch is what FollowRevisions follows: a fleet.HostWatch, whose
// subscribers are woken when a host comes, goes or changes its processes,
// and which answers Hosts from the profiles it holds, asking only the hosts
// that changed.
type Watch interface {
	Subscribe() <-chan struct{}
	Hosts(ctx context.Context) ([]fleet.HostEntry, error)
}

// FollowRevisions calls changed with the revisions of module that run in
// the fleet, sorted, each time they change, until ctx ends. It is how a
// client that declared lines from a checkout keeps their per-revision lines
// current (Resolve) as revisions appear: a line declared before an
// agent reported a process, or before a new revision started, would
// otherwise be traced there at the checkout's line number. A build without
// vcs.revision that starts counts as a change too: its revision is found
// when the lines are resolved again. known are the revisions (and the
// builds, as "build:" and the build ID) the lines were mapped into
// already: only a change from them is reported.
func FollowRevisions(ctx context.Context, w Watch, module string, known []string, changed func(revs []string)) {
	last := slices.Clone(known)
	slices.Sort(last)
	changes := w.Subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		}
		// A host that answers its profile late costs one pass, not the
		// following: its revisions come with the next change.
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		hosts, err := w.Hosts(hctx)
		cancel()
		if err != nil {
			continue
		}
		revs := Revisions(hosts, module)
		seen := append(slices.Clone(revs), unstamped(hosts, module)...)
		if !newRevision(seen, last) {
			continue
		}
		// Revisions seen stay known: one that stops and starts again is
		// mapped already.
		last = append(last, seen...)
		slices.Sort(last)
		last = slices.Compact(last)
		changed(revs)
	}
}

// newRevision reports whether revs has a revision that was not in last:
// a revision that stops running leaves its mapping in place, harmless.
func newRevision(revs, last []string) bool {
	for _, r := range revs {
		if _, ok := slices.BinarySearch(last, r); !ok {
			return true
		}
	}
	return false
}

// unstamped lists, as "build:" and the build ID, the builds without
// vcs.revision that the fleet's processes of module run (every module when
// module is empty).
func unstamped(hosts []fleet.HostEntry, module string) []string {
	var out []string
	for _, h := range hosts {
		if h.Gone || h.Profile == nil {
			continue
		}
		for _, p := range h.Profile.Processes {
			if p.Revision == "" && p.Build != "" && (module == "" || p.Module == module) {
				out = append(out, "build:"+p.Build)
			}
		}
	}
	return out
}
