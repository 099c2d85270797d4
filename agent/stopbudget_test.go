package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// TestStopBudget traces a line of a loop that runs without pause, capturing
// as much as a spec may ask, once under a 5% stop budget and once with no
// budget, side by side. Under the budget the status must say why hits are
// dropped (or why the tracepoint was removed), naming the budget, and the
// process must be stopped much less of the time than without one. The
// stopped share is measured two ways, both logged: the agent's
// riptrace_target_stopped_seconds_total, and the state of the process's
// threads in /proc sampled every millisecond ('t': stopped by its tracer).
func TestStopBudget(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	sampled := map[string]float64{}
	t.Run("group", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			budget float64
			every  string // the loop's pause between calls
		}{
			{"budget5", 0.05, "0"},
			{"budget5paced", 0.05, "50ms"},
			{"nobudget", -1, "0"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				reg := prometheus.NewRegistry()
				h := newHarnessWith(t, agent.Config{StopBudget: tc.budget, Metrics: reg})
				p := h.start("-every", tc.every)
				spec := h.spec(tc.name, "process")
				spec.Capture = fleet.Capture{Args: true, Locals: true, StackDepth: 64, MaxString: 4096, MaxArray: 256, MaxDepth: 2, MaxVariable: 256}
				spec.Limits.MaxHitsPerSecond = 1_000_000
				if err := h.c.Declare(context.Background(), spec); err != nil {
					t.Fatal(err)
				}
				// A paced line may cost less than the budget (the Delve
				// backend stops only the thread that hit): then it must
				// stay within it, throttled or not.
				paced := tc.every != "0"
				if tc.budget > 0 && !paced {
					st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool {
						return ev.Pid == p.Pid && (ev.State == fleet.StateThrottled || ev.State == fleet.StateError)
					})
					t.Logf("status %s: %s", st.State, st.Message)
					if !strings.Contains(st.Message, "stop budget") || !strings.Contains(st.Message, "5%") {
						t.Errorf("status %s %q, want the stop budget of 5%% as the reason", st.State, st.Message)
					}
				} else {
					st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool {
						return ev.Pid == p.Pid && (ev.State == fleet.StateInstalled || ev.State == fleet.StateThrottled)
					})
					if st.State == fleet.StateThrottled && (!strings.Contains(st.Message, "stop budget") || !strings.Contains(st.Message, "5%")) {
						t.Errorf("status %s %q, want the stop budget of 5%% as the reason", st.State, st.Message)
					}
				}
				// The window begins when no thread is stopped: a stop
				// under way would count whole in the metric but be seen
				// only in part.
				var m0 float64
				var ok0 bool
				var w0 time.Time
				share, longest := sampleStopped(t, p.Pid, 3*time.Second, func() {
					m0, ok0 = stoppedMetric(t, reg, p.Pid)
					w0 = time.Now()
				})
				m1, ok1 := stoppedMetric(t, reg, p.Pid)
				window := time.Since(w0).Seconds()
				metric := "detached, not exported"
				if ok0 && ok1 {
					metric = fmt.Sprintf("%.1f%%", (m1-m0)/window*100)
				}
				t.Logf("stopped share over 3s: %.1f%% sampled in /proc; by riptrace_target_stopped_seconds_total: %s; longest stop seen %v", share*100, metric, longest)
				if tc.budget < 0 && !ok1 {
					t.Error("no riptrace_target_stopped_seconds_total for an attached process")
				}
				// Twice the budget: the budget lets a second's worth
				// through at once after a pause. And one stop more: a
				// budget cannot cut short a stop under way (on a loaded
				// machine one capture waits for a CPU), only make the
				// process pay it back by stopping less afterwards.
				if paced && ok0 && ok1 && m1-m0 > 2*tc.budget*window+longest.Seconds() {
					t.Errorf("stopped %s of the time under a budget of %g%%, more than twice it and the longest stop (%v)", metric, tc.budget*100, longest)
				}
				mu.Lock()
				sampled[tc.name] = share
				mu.Unlock()
				stillRunning(t, p)
			})
		}
	})
	if t.Failed() {
		return
	}
	if sampled["budget5"] > sampled["nobudget"]/2 {
		t.Errorf("stopped %.1f%% of the time under a 5%% budget and %.1f%% without: the budget does not hold", sampled["budget5"]*100, sampled["nobudget"]*100)
	}
}

// sampleStopped reads the state of pid's threads every millisecond for d
// from the first sample that finds none stopped, when it calls begin. It
// returns the share of samples in which its tracer had one of them
// stopped (the Delve backend stops only the thread that hit), and the
// longest run of samples that found one stopped, from the first of them to
// the sample after: the longest stop, to within a sample's interval.
func sampleStopped(t *testing.T, pid int, d time.Duration, begin func()) (share float64, longest time.Duration) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	var n, stopped int
	var end time.Time
	var since time.Time // of the run of stopped samples under way
	for now := time.Now(); end.IsZero() || now.Before(end); now = time.Now() {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("sampling pid %d: %v", pid, err)
		}
		held := false
		for _, task := range tasks {
			stat, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
			if err != nil {
				continue // the thread ended
			}
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 't' {
				held = true
				break
			}
		}
		switch {
		case end.IsZero() && held:
			time.Sleep(time.Millisecond)
			continue // not begun: a stop is under way
		case end.IsZero():
			begin()
			end = time.Now().Add(d)
		case held && since.IsZero():
			since = now
		case !held && !since.IsZero():
			longest = max(longest, now.Sub(since))
			since = time.Time{}
		}
		n++
		if held {
			stopped++
		}
		time.Sleep(time.Millisecond)
	}
	if !since.IsZero() {
		longest = max(longest, time.Since(since))
	}
	return float64(stopped) / float64(max(n, 1)), longest
}

// stoppedMetric returns riptrace_target_stopped_seconds_total for pid, if
// the agent exports it (while attached).
func stoppedMetric(t *testing.T, reg *prometheus.Registry, pid int) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "riptrace_target_stopped_seconds_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pid" && l.GetValue() == strconv.Itoa(pid) {
					return m.GetCounter().GetValue(), true
				}
			}
		}
	}
	return 0, false
}
