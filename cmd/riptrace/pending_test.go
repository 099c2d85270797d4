package main_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestTraceWaitsForAttach checks the rule by which `riptrace trace` gives
// up: once every process has refused and none is pending. One process
// lacks the file and refuses at once; the other has it, and its attach is
// held until trace has printed the refusal, which it does when it would
// give up. The process being attached says it is pending, so trace waits
// for it and prints its hits.
func TestTraceWaitsForAttach(t *testing.T) {
	t.Parallel()
	s := fleettest.RunServer(t)
	// Targets first, so that the cleanups stop the agent (which detaches)
	// before they kill the targets.
	slow := startTarget(t, "attach-slow", "-every", "10ms")
	lacks := startTargetBuild(t, agenttest.BuildTarget(t, "../../agent/testdata/targets/paced"), "attach-lacks")
	held := agenttest.RunAgentHolding(t, s, agent.Config{Host: "attach-host", Processes: []string{exeName("attach-slow"), exeName("attach-lacks")}}, nil, slow.Pid)

	src := loopSource(t)
	loc := "loop/main.go:" + strconv.Itoa(agenttest.MarkerLine(t, src, "process"))
	tr := start(t, "trace", "--nats", s.ClientURL(), "--json", "--count", "3", loc)

	// trace prints the refusal of a process that lacks the file once the
	// statuses have settled: then it decides whether to give up.
	tr.await(t, stateTimeout, "the refusal of pid "+strconv.Itoa(lacks.Pid), func(_, stderr string) bool {
		return statusLine(stderr, lacks.Pid, fleet.StateError) != ""
	})
	select {
	case <-held.Started():
	case <-time.After(stateTimeout):
		t.Fatalf("the agent never began to attach to pid %d\n%s", slow.Pid, tr.Stderr())
	}
	if statusLine(tr.Stderr(), slow.Pid, fleet.StatePending) == "" {
		t.Errorf("trace printed no pending status for pid %d, being attached:\n%s", slow.Pid, tr.Stderr())
	}
	held.Release()

	if code := tr.exitCode(t, stateTimeout); code != 0 {
		t.Fatalf("riptrace trace: exit status %d, want 0 with the hits of pid %d\n%s", code, slow.Pid, tr.Stderr())
	}
	hits := decodeHits(t, tr.Stdout())
	if len(hits) != 3 {
		t.Errorf("printed %d hits, want 3", len(hits))
	}
	for i, h := range hits {
		if h.Pid != slow.Pid {
			t.Errorf("hit %d from pid %d, want pid %d", i+1, h.Pid, slow.Pid)
		}
	}
}
