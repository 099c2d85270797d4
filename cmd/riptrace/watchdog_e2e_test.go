package main_test

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
)

// TestAgentAndWorkerSIGKILL kills a riptrace agent and its Delve worker
// together, as systemd's KillMode=control-group SIGKILL or the OOM killer
// would, while a tracepoint in the target hits: nobody is left to detach, so
// the worker's watchdog (in a session of its own) must restore the target's
// text, and the target must keep running.
func TestAgentAndWorkerSIGKILL(t *testing.T) {
	t.Parallel()
	src := loopSource(t)
	url := startServer(t)
	target := startTarget(t, "wdkill-loop", "-every", "20ms")
	agent := startAgent(t, url, "wdkill-host", "wdkill-loop")
	awaitProcesses(t, url, map[*agenttest.Proc]string{target: "wdkill-host"}, detached)
	tr := start(t, "trace", "--nats", url, "--json", "--rate", "0", "--backend", "delve", fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "process")))
	tr.await(t, stateTimeout, "5 hits", func(stdout, _ string) bool { return len(decodeHits(t, stdout)) >= 5 })

	worker := tracerOf(t, target.Pid)
	if worker == 0 {
		t.Fatal("the target is not traced")
	}
	// In a pause of the loop: a kill that lands while a thread sits at a
	// breakpoint is beyond any watchdog (see agent/delve/watchdog_linux.go).
	for traceStopped(target.Pid) {
		time.Sleep(100 * time.Microsecond)
	}
	syscall.Kill(worker, syscall.SIGKILL)
	agent.signal(t, syscall.SIGKILL)
	select {
	case <-agent.done:
	case <-time.After(stopTimeout):
		t.Fatalf("agent still running %v after SIGKILL", stopTimeout)
	}
	for range 3 {
		awaitProgress(t, target)
	}
	if tp := tracerOf(t, target.Pid); tp != 0 {
		t.Errorf("target still traced by %d", tp)
	}
	if strings.Contains(target.Stderr(), "SIGTRAP") {
		t.Errorf("target stderr mentions SIGTRAP:\n%s", target.Stderr())
	}
	if !strings.Contains(agent.Stderr(), "restored") {
		t.Errorf("no watchdog report in the agent's stderr:\n%s", agent.Stderr())
	}
}

func tracerOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return 0
}

// traceStopped reports whether any thread of pid is in a ptrace stop.
func traceStopped(pid int) bool {
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
