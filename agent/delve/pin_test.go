package delve_test

import (
	"io"

	"fmt"
	"github.com/riptrace/riptrace/agent/delve"
	"os"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// TestWorkerPinned: every thread of a worker, the ones it started while
// serving hits included, runs on one and the same CPU (see pinToOneCPU),
// and the target's own threads are left alone.
func TestWorkerPinned(t *testing.T) {
	t.Parallel()
	ctx, p, tg := attachTo(t, delve.NewInt3(io.Discard), loopDir, false, "-every", "1ms")
	spec := fleet.Spec{
		ID:       "pin",
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(t, loopDir+"/main.go", "process")},
		Capture:  fleet.DefaultCapture,
	}
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, ok := <-tg.Hits(); !ok {
			t.Fatal("hits ended before 50")
		}
	}
	worker := tracer(t, p.Pid)
	if worker == 0 {
		t.Fatal("the target is not traced")
	}
	cpus := allowedCPUs(t, worker)
	for tid, list := range cpus {
		if strings.ContainsAny(list, ",-") || list != cpus[fmt.Sprint(worker)] {
			t.Errorf("worker thread %s may run on CPUs %s; want all on one CPU: %v", tid, list, cpus)
		}
	}
	t.Logf("worker %d: %d threads on CPU %s", worker, len(cpus), cpus[fmt.Sprint(worker)])
	mine := allowedCPUs(t, os.Getpid())[fmt.Sprint(os.Getpid())]
	for tid, list := range allowedCPUs(t, p.Pid) {
		if list != mine {
			t.Errorf("target thread %s may run on CPUs %s, want %s as before the attach", tid, list, mine)
		}
	}
}

// allowedCPUs returns Cpus_allowed_list of each thread of pid.
func allowedCPUs(t *testing.T, pid int) map[string]string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				out[task.Name()] = strings.TrimSpace(v)
			}
		}
	}
	return out
}
