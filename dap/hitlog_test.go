package dap

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// TestHitLogKeeps checks that the hit log, which keeps up to twice what
// its views show and builds rows only when shown, shows exactly what a
// log keeping only the newest would: the timeline's last timelineLen
// hits, each process's last recentPerProcess, the events' counts of new
// hits and the breakpoints they hit, the console's latest counted hit, and
// no hit the views no longer keep opens.
func TestHitLogKeeps(t *testing.T) {
	local := func(fallback string, h *fleet.Hit) (string, int) { return fallback, h.Line + 1 }
	l := newHitLog(local)
	const n = 3*timelineLen + 7
	var all []*logged
	var counts []int
	now := time.Now()
	for i := range n {
		p := fleet.Placed{Hit: fleet.Hit{Seq: uint64(1 + i/3), Part: i % 3, Host: fmt.Sprintf("h%d", i%2), Pid: 7, Line: i,
			Args: []fleet.Variable{{Name: "n", Value: fmt.Sprint(i)}}}, Order: uint64(i + 1)}
		e := &logged{p: p, bp: 1, fallback: "/co/f.go"}
		all = append(all, e)
		l.record(e, false, now)
		if i == 105 || i == n-1 {
			k, bps := l.takeFresh()
			if !slices.Equal(bps, []int{1}) {
				t.Errorf("an event after hit %d names breakpoints %v, want [1]", i, bps)
			}
			counts = append(counts, k)
		}
	}
	row := func(e *logged) HitRow { return hitRow(1, &e.p, "/co/f.go", e.p.Hit.Line+1) }
	rows := func(es []*logged) []HitRow {
		var out []HitRow
		for _, e := range es {
			out = append(out, row(e))
		}
		return out
	}

	if got, want := l.timelineSince(0, 0), rows(all[n-timelineLen:]); !slices.Equal(got, want) {
		t.Errorf("timeline has %d rows from order %d, want the last %d from %d", len(got), got[0].Order, len(want), want[0].Order)
	}
	if got, want := l.timelineSince(uint64(n-5), 3), rows(all[n-3:]); !slices.Equal(got, want) {
		t.Errorf("timeline since %d limit 3 = %+v, want %+v", n-5, got, want)
	}
	total, procs := l.processes(1)
	if total != n || len(procs) != 2 {
		t.Fatalf("processes = %d hits, %d processes; want %d, 2", total, len(procs), n)
	}
	for k, ph := range procs {
		var mine []*logged
		for _, e := range all {
			if e.p.Hit.Host == ph.Host {
				mine = append(mine, e)
			}
		}
		want := rows(mine[len(mine)-recentPerProcess:])
		slices.Reverse(want)
		if ph.Host != fmt.Sprintf("h%d", k) || ph.Count != uint64(len(mine)) || !slices.Equal(ph.Hits, want) {
			t.Errorf("process %s: %d hits of %d, want the last %d of %d newest first", ph.Host, len(ph.Hits), ph.Count, recentPerProcess, len(mine))
		}
	}
	if want := []int{106, n - 106}; !slices.Equal(counts, want) {
		t.Errorf("events counted %v new hits, want %v", counts, want)
	}
	if k, bps := l.takeFresh(); k != 0 || bps != nil {
		t.Errorf("a second take = %d hits of %v; want none", k, bps)
	}

	cs := l.counts()
	if len(cs) != 1 || cs[0].counted != n-fullHits || cs[0].latest != row(all[n-1]) {
		t.Errorf("counts = %+v, want %d counted, the latest the last hit", cs, n-fullHits)
	}
	// old is the newest hit the timeline no longer shows, though its list
	// still holds it, and no process's last hits include it.
	last, old := all[n-1].p.Hit, all[n-timelineLen-1].p.Hit
	if e := l.find(0, last.Seq, last.Part); e != all[n-1] {
		t.Errorf("find of the last hit #%s = %v", last.Number(), e)
	}
	if e := l.find(0, old.Seq, old.Part); e != nil {
		t.Errorf("find of hit #%s, no longer kept, found order %d", old.Number(), e.p.Order)
	}
	if e := l.find(1, 0, 0); e != all[n-1] {
		t.Errorf("the latest of breakpoint 1 = %v, want the last hit", e)
	}
}
