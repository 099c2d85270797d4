package agent_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestHeartbeatDuringLongAttach holds an attach while the agent beats
// every 100 ms: the heartbeats go on. A stressed CI run saw a scenario
// declare its agent gone, three beats missed, while the agent attached
// for 30 s: the ticker waited on the reconcile pass to write hit counts.
func TestHeartbeatDuringLongAttach(t *testing.T) {
	t.Parallel()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	exe := fmt.Sprintf("agent-test-beat-%d", os.Getpid())
	p := agenttest.Start(t, agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), exe))
	const host = "beat-host"
	held := agenttest.RunAgentHolding(t, s, agent.Config{Host: host, Processes: []string{exe}, HeartbeatEvery: 100 * time.Millisecond}, nil, p.Pid)

	spec := &fleet.Spec{
		ID:       "beat",
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(t, loopSrc, "process")},
		Capture:  fleet.DefaultCapture,
		Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
	}
	if err := c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Started():
	case <-time.After(time.Minute):
		t.Fatalf("the agent never began to attach to pid %d", p.Pid)
	}
	// Five beats while the attach is held; without it, a beat's hit
	// counts would wait for the pass, and the beats with them.
	var seen []time.Time
	agenttest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		hosts, err := c.Hosts(context.Background())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == host && (len(seen) == 0 || h.LastSeen.After(seen[len(seen)-1])) {
				seen = append(seen, h.LastSeen)
			}
		}
		if len(seen) < 5 {
			return fmt.Errorf("%d heartbeats of %s seen while its attach is held, want 5", len(seen), host)
		}
		return nil
	})
	held.Release()
}
