package agent_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestWorkerKilledReattaches SIGKILLs the Delve worker of a traced process
// while the agent runs on: the worker's watchdog restores the process's
// text, the process keeps running, and the agent attaches a new worker and
// reinstalls the tracepoint by itself, with hits flowing again.
func TestWorkerKilledReattaches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start("-every", "20ms")
	spec := h.spec("rewatch", "process")
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(p.Pid))
	h.hits(spec.ID, 3)

	worker := agenttest.TracerPid(p.Pid)
	if worker == 0 {
		t.Fatal("the target is not traced")
	}
	// In a pause of the loop: a kill that lands while a thread sits at a
	// breakpoint is beyond any watchdog (see agent/delve/watchdog_linux.go).
	for anyTraceStopped(p.Pid) {
		time.Sleep(100 * time.Microsecond)
	}
	killed := time.Now()
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// A new worker, and hits taken after the kill.
	testsupport.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !p.Alive() {
			t.Fatalf("target died after its worker was killed:\n%s", p.Stderr())
		}
		if tp := agenttest.TracerPid(p.Pid); tp == 0 || tp == worker {
			return fmt.Errorf("traced by %d, want a new worker", tp)
		}
		return nil
	})
	reattached := time.Since(killed)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Since: killed})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for n := 0; n < 3; {
		hit, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("reading hits after the kill: %v\nagent log:\n%s", err, h.agentLog())
		}
		if hit.Pid == p.Pid && hit.Time > killed.UnixNano() {
			n++
		}
	}
	t.Logf("new worker attached %v after the kill", reattached.Round(time.Millisecond))
	stillRunning(t, p)
	if s := p.Stderr(); strings.Contains(s, "SIGTRAP") {
		t.Errorf("target stderr mentions SIGTRAP:\n%s", s)
	}
}

// anyTraceStopped reports whether any thread of pid is in a ptrace stop.
func anyTraceStopped(pid int) bool {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 't' {
			return true
		}
	}
	return false
}
