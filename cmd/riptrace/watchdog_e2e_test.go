package main_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
)

// TestAgentAndWorkerSIGKILL kills a riptrace agent and its Delve worker
// together, as systemd's KillMode=control-group SIGKILL or the OOM killer
// would, while a tracepoint in the target hits: nobody is left to detach,
// and the target must keep running, untraced. With uprobes the kernel
// removes the probes with the worker; in the int3 fallback the worker's
// watchdog (in a session of its own) must restore the target's text, and
// report it. (agent/delve's TestKillMatrix kills at every instant.)
func TestAgentAndWorkerSIGKILL(t *testing.T) {
	t.Parallel()
	src := loopSource(t)
	url := startServer(t)
	target := startTarget(t, "wdkill-loop", "-every", "20ms")
	agent := startAgent(t, url, "wdkill-host", "wdkill-loop")
	awaitProcesses(t, url, map[*agenttest.Proc]string{target: "wdkill-host"}, detached)
	tr := start(t, "trace", "--nats", url, "--json", "--rate", "0", "--backend", "delve", fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "process")))
	tr.await(t, stateTimeout, "5 hits", func(stdout, _ string) bool { return len(decodeHits(t, stdout)) >= 5 })

	worker := agenttest.TracerPid(target.Pid)
	if worker == 0 {
		t.Fatal("the target is not traced")
	}
	int3 := strings.Contains(agent.Stderr(), "no uprobes here")
	// In int3 mode, in a pause of the loop: a kill that lands while a
	// thread sits at a breakpoint is beyond any watchdog (see
	// agent/delve/watchdog_linux.go).
	for stopped, _ := agenttest.TraceStopped(target.Pid); int3 && stopped; stopped, _ = agenttest.TraceStopped(target.Pid) {
		time.Sleep(100 * time.Microsecond)
	}
	syscall.Kill(worker, syscall.SIGKILL)
	agent.signal(t, syscall.SIGKILL)
	select {
	case <-agent.Exited():
	case <-time.After(stopTimeout):
		t.Fatalf("agent still running %v after SIGKILL", stopTimeout)
	}
	for range 3 {
		awaitProgress(t, target)
	}
	if tp := agenttest.TracerPid(target.Pid); tp != 0 {
		t.Errorf("target still traced by %d", tp)
	}
	if strings.Contains(target.Stderr(), "SIGTRAP") {
		t.Errorf("target stderr mentions SIGTRAP:\n%s", target.Stderr())
	}
	if int3 && !strings.Contains(agent.Stderr(), "restored") {
		t.Errorf("no watchdog report in the agent's stderr:\n%s", agent.Stderr())
	}
}
