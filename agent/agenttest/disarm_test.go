package agenttest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// errorsT records the errors a check reports.
type errorsT struct {
	testing.TB
	errors []string
}

func (e *errorsT) Helper()                   {}
func (e *errorsT) Logf(string, ...any)       {}
func (e *errorsT) Errorf(f string, a ...any) { e.errors = append(e.errors, fmt.Sprintf(f, a...)) }

// window is 50 hits 10 ms apart from start; the first carries uncounted
// and dropped.
func window(start time.Duration, uncounted, dropped uint64) []agent.Hit {
	var hits []agent.Hit
	for i := range 50 {
		h := agent.Hit{Hit: fleet.Hit{Time: int64(start + time.Duration(i)*10*time.Millisecond)}}
		if i == 0 {
			h.Uncounted, h.Dropped = uncounted, dropped
		}
		hits = append(hits, h)
	}
	return hits
}

// TestCheckWindows: each window after the first must say what ran before
// it, by an estimate (the probes were out) or a count of drops (a starved
// decoder took them out late, and the allowance refused the hits); one
// that says neither fails the check.
func TestCheckWindows(t *testing.T) {
	for _, c := range []struct {
		name string
		hits [][]agent.Hit
		fail bool
	}{
		{"estimates", [][]agent.Hit{window(0, 0, 0), window(time.Second, 900, 0), window(2*time.Second, 800, 1)}, false},
		{"a late decoder's drops", [][]agent.Hit{window(0, 0, 0), window(time.Second, 0, 1100), window(2*time.Second, 800, 0)}, false},
		{"a silent window", [][]agent.Hit{window(0, 0, 0), window(time.Second, 900, 0), window(2*time.Second, 0, 0)}, true},
		{"too few hits", [][]agent.Hit{window(0, 0, 0), window(time.Second, 900, 0)[:20]}, true},
	} {
		var hits []agent.Hit
		for _, w := range c.hits {
			hits = append(hits, w...)
		}
		et := &errorsT{TB: t}
		agenttest.CheckWindows(et, c.name, hits)
		if failed := len(et.errors) > 0; failed != c.fail {
			t.Errorf("%s: failed %v, want %v: %q", c.name, failed, c.fail, et.errors)
		}
	}
}
