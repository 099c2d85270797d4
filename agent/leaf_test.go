package agent_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestAgentBehindLeafNode: an agent at a site reaches the fleet only
// through the site's leaf node, which dials out to the hub. A client on the
// hub lists it, declares a tracepoint, sees it installed and reads its
// hits: the stream and buckets are the hub's, the leaf keeps none.
func TestAgentBehindLeafNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leafPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	hub, err := fleet.StartServer(ctx, fleet.ServerConfig{Name: "hub", Listen: "127.0.0.1:-1", DataDir: t.TempDir(), LeafListen: fmt.Sprintf("127.0.0.1:%d", leafPort), Domain: "hub"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Shutdown)
	site, err := fleet.StartServer(ctx, fleet.ServerConfig{Name: "site", Listen: "127.0.0.1:-1", LeafRemotes: []string{fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(site.Shutdown)
	agenttest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if site.NumLeafNodes() != 1 {
			return fmt.Errorf("the site has %d leaf connections to the hub, want 1", site.NumLeafNodes())
		}
		return nil
	})

	c := fleettest.Connect(t, hub.Server)
	host := "site-host"
	exe := fmt.Sprintf("agent-leaf-%d", os.Getpid())
	bin := agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), exe)
	// NATS lets JetStream requests cross a leaf connection only when they
	// name the hub's domain: the site's agent is told it.
	t.Setenv("RIPTRACE_JS_DOMAIN", "hub")
	agenttest.RunAgent(t, site.Server, agent.Config{Host: host, Processes: []string{exe}}, nil)
	p := agenttest.Start(t, bin)

	spec := &fleet.Spec{
		ID:       "leaf",
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(t, loopSrc, "process")},
		Capture:  fleet.DefaultCapture,
		Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
	}
	r, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	statuses, err := c.WatchStatus(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range statuses {
		if ev.Host == host && ev.Pid == p.Pid && ev.State == fleet.StateInstalled {
			break
		}
	}
	hit, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("reading the hit of the agent behind the leaf node: %v", err)
	}
	if hit.Host != host || hit.Pid != p.Pid {
		t.Fatalf("hit from %s pid %d, want %s pid %d", hit.Host, hit.Pid, host, p.Pid)
	}
	hosts, err := c.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].Name != host || hosts[0].Gone || hosts[0].Profile == nil {
		t.Fatalf("hosts listed on the hub: %+v, want %s live with its profile", hosts, host)
	}
	if site.JetStreamEnabled() {
		t.Fatal("the site's server runs JetStream: its agents would write to a stream of their own, not the hub's")
	}
}
