package fleet

import (
	"testing"
	"time"
)

// TestHostWatchApplyTellsChanges checks which heartbeats wake a host
// watch's subscribers: a host that comes, changes its processes, falls
// silent, speaks again or goes does; one that only says it is still there
// does not, so that a thousand agents' heartbeats cost a reader nothing.
func TestHostWatchApplyTellsChanges(t *testing.T) {
	hw := &HostWatch{hosts: map[string]*watchedHost{}}
	t0 := time.Now()
	apply := func(ev SpecEvent, now time.Time) bool {
		changed, _ := hw.apply(ev, now)
		return changed
	}
	beat := func(host, digest string, at time.Time) SpecEvent {
		return SpecEvent{Entries: []SpecEntry{{Key: host, Value: Encode(&Heartbeat{Host: host, Updated: at, Every: Duration(time.Second), Digest: digest})}}}
	}
	steps := []struct {
		what    string
		changed bool
		do      func() bool
	}{
		{"the first values", true, func() bool { return apply(SpecEvent{Resync: true, Entries: beat("a", "d1", t0).Entries}, t0) }},
		{"a says it is still there", false, func() bool { return apply(beat("a", "d1", t0.Add(time.Second)), t0.Add(time.Second)) }},
		{"b comes", true, func() bool { return apply(beat("b", "d1", t0.Add(time.Second)), t0.Add(time.Second)) }},
		{"a's processes change", true, func() bool { return apply(beat("a", "d2", t0.Add(2*time.Second)), t0.Add(2*time.Second)) }},
		{"nobody fell silent yet", false, func() bool { return hw.silenced(t0.Add(3 * time.Second)) }},
		{"a and b fall silent", true, func() bool { return hw.silenced(t0.Add(10 * time.Second)) }},
		{"still silent", false, func() bool { return hw.silenced(t0.Add(11 * time.Second)) }},
		{"a speaks again", true, func() bool { return apply(beat("a", "d2", t0.Add(12*time.Second)), t0.Add(12*time.Second)) }},
		{"b withdraws", true, func() bool {
			return apply(SpecEvent{Entries: []SpecEntry{{Key: "b", Deleted: true}}}, t0.Add(12*time.Second))
		}},
		{"b withdraws again", false, func() bool {
			return apply(SpecEvent{Entries: []SpecEntry{{Key: "b", Deleted: true}}}, t0.Add(12*time.Second))
		}},
	}
	for _, s := range steps {
		if got := s.do(); got != s.changed {
			t.Errorf("%s: changed = %v, want %v", s.what, got, s.changed)
		}
	}
	// A shorter period brings the deadline nearer: nothing to tell yet,
	// but the watch's timer must be set again.
	ev := SpecEvent{Entries: []SpecEntry{{Key: "a", Value: Encode(&Heartbeat{Host: "a", Updated: t0.Add(12 * time.Second), Every: Duration(time.Millisecond), Digest: "d2"})}}}
	if changed, sooner := hw.apply(ev, t0.Add(12*time.Second)); changed || !sooner {
		t.Errorf("a's period shrinks: changed %v, sooner %v; want false, true", changed, sooner)
	}
}
