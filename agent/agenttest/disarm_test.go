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
			h.Uncounted.N, h.Dropped = uncounted, dropped
		}
		hits = append(hits, h)
	}
	return hits
}

// steady is n hits, one every d from 0, saying nothing of drops.
func steady(n int, d time.Duration) []agent.Hit {
	var hits []agent.Hit
	for i := range n {
		hits = append(hits, agent.Hit{Hit: fleet.Hit{Time: int64(time.Duration(i) * d)}})
	}
	return hits
}

// TestCheckWindows: a window begins where a gap says what ran in it, by
// an estimate (the probes were out) or a count of drops (a starved decoder
// took them out late, and the allowance refused the hits); a gap that says
// neither is the line not running, within a window; each window has about
// 50 hits, or 50 a second in a window longer than a second.
func TestCheckWindows(t *testing.T) {
	for _, c := range []struct {
		name    string
		hits    [][]agent.Hit
		windows int
		fail    bool
	}{
		{"estimates", [][]agent.Hit{window(0, 0, 0), window(time.Second, 900, 0), window(2*time.Second, 800, 1)}, 3, false},
		{"a late decoder's drops", [][]agent.Hit{window(0, 0, 0), window(time.Second, 0, 1100), window(2*time.Second, 800, 0)}, 3, false},
		{"a starved line's gap", [][]agent.Hit{window(0, 0, 0), window(time.Second, 900, 0)[:25], window(2*time.Second, 0, 0)[:25]}, 2, false},
		{"drops within a window", [][]agent.Hit{window(0, 0, 0)[:25], window(250*time.Millisecond, 0, 3)[:25]}, 1, false},
		{"too few hits", [][]agent.Hit{window(0, 0, 0), window(time.Second, 900, 0)[:20]}, 2, true},
		{"unspent windows run together", [][]agent.Hit{steady(200, 20*time.Millisecond), window(5*time.Second, 900, 0)}, 2, false},
		{"too many hits", [][]agent.Hit{steady(250, 5*time.Millisecond), window(2*time.Second, 900, 0)}, 2, true},
	} {
		var hits []agent.Hit
		for _, w := range c.hits {
			hits = append(hits, w...)
		}
		if n := agenttest.ArmedWindows(hits); n != c.windows {
			t.Errorf("%s: %d windows, want %d", c.name, n, c.windows)
		}
		et := &errorsT{TB: t}
		agenttest.CheckWindows(et, c.name, hits)
		if failed := len(et.errors) > 0; failed != c.fail {
			t.Errorf("%s: failed %v, want %v: %q", c.name, failed, c.fail, et.errors)
		}
	}
}
