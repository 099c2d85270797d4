package delve_test

import (
	"io"

	"errors"
	"fmt"
	"github.com/riptrace/riptrace/agent/delve"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// TestEveryThreadTraced: in uprobe mode a thread that is not traced takes
// its probe's signal without stopping, and its hit is lost. So every thread
// of the target must be traced by the worker, those the Go runtime starts
// after the attach included (selfcheck starts one five times a second).
func TestEveryThreadTraced(t *testing.T) {
	t.Parallel()
	ctx, p, tg := attachTo(t, nil, selfcheckDir, false)
	before := threads(p.Pid)
	spec := fleet.Spec{ID: "threads", Location: fleet.Location{Path: "selfcheck/main.go", Line: agenttest.MarkerLine(t, selfcheckDir+"/main.go", "cool")}, Capture: fleet.DefaultCapture}
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range tg.Hits() {
		}
	}()
	agenttest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		for tid := range threads(p.Pid) {
			if !before[tid] {
				return nil
			}
		}
		return errors.New("no thread started since the attach")
	})
	worker := tracer(t, p.Pid)
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.Pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", p.Pid, task.Name()))
		if err != nil {
			continue // ended meanwhile
		}
		if !strings.Contains(string(b), fmt.Sprintf("TracerPid:\t%d\n", worker)) {
			t.Errorf("thread %s of pid %d is not traced by the worker %d", task.Name(), p.Pid, worker)
		}
	}
	t.Logf("%d threads, all traced by %d", len(tasks), worker)
}

// threads returns the thread ids of pid.
func threads(pid int) map[string]bool {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	m := make(map[string]bool)
	for _, task := range tasks {
		m[task.Name()] = true
	}
	return m
}

// TestUprobeMode: on a host where root may load BPF programs and attach
// uprobes (this kind of machine), the backend must run in uprobe mode: a
// fallback to int3 mode there would be silent, and unsafe when a worker is
// killed.
func TestUprobeMode(t *testing.T) {
	if os.Geteuid() != 0 || os.Getenv("RIPTRACE_DELVE_MODE") != "" {
		t.Skip("needs root, and RIPTRACE_DELVE_MODE unset")
	}
	if mode, why := delve.New(io.Discard).Mode(); mode != "uprobe" {
		t.Fatalf("the Delve backend runs in %s mode as root: %v", mode, why)
	}
}
