package agent_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// stalledHits is the agent's real backends, eBPF first, with the hits of
// each process passed on by a goroutine of the test's that stalls at the
// first one until released: a goroutine between the backend and the agent
// that a loaded machine leaves unscheduled.
type stalledHits struct {
	*agent.Backends
	first    chan agent.Hit // receives the first hit, as it stalls
	release  chan struct{}
	announce sync.Once
}

func (s *stalledHits) Attach(ctx context.Context, pid int) (agent.Target, error) {
	t, err := s.Backends.Attach(ctx, pid)
	if err != nil {
		return nil, err
	}
	st := &stalledTarget{Target: t, out: make(chan agent.Hit, 1024)}
	go func() {
		defer close(st.out)
		for h := range t.Hits() {
			s.announce.Do(func() {
				s.first <- h
				<-s.release
			})
			st.out <- h
		}
	}()
	return st, nil
}

// stalledTarget passes on what the agent asks of the target it wraps.
type stalledTarget struct {
	agent.Target
	out chan agent.Hit
}

func (t *stalledTarget) Hits() <-chan agent.Hit { return t.out }

func (t *stalledTarget) Follow(tr *agent.Transit) {
	if f, ok := t.Target.(agent.Follower); ok {
		f.Follow(tr)
	}
}

func (t *stalledTarget) Holding() int64 {
	if h, ok := t.Target.(interface{ Holding() int64 }); ok {
		return h.Holding()
	}
	return 0
}

// TestWatermarksWaitForHitsInTransit stalls a hit the eBPF backend has
// delivered before the agent takes it: for two seconds of watermarks none
// passes it, and once it goes on it arrives, and the watermarks after it.
// A stressed run saw a hit arrive behind a watermark that promised it (the
// decoder had sent it; the goroutine taking it was starved), and a
// scenario judged without its hits.
func TestWatermarksWaitForHitsInTransit(t *testing.T) {
	if err := ebpf.Available(); err != nil {
		t.Skipf("eBPF is not available here: %v", err)
	}
	t.Parallel()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	exe := fmt.Sprintf("agent-test-transit-%d", os.Getpid())
	agenttest.Start(t, agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), exe), "-every", "20ms")
	stalled := &stalledHits{first: make(chan agent.Hit, 1), release: make(chan struct{})}
	released := sync.OnceFunc(func() { close(stalled.release) })
	const host = "transit-host"
	agenttest.RunAgentWrapped(t, s, agent.Config{Host: host, Processes: []string{exe}}, nil,
		func(b agent.Backend) agent.Backend {
			stalled.Backends = b.(*agent.Backends)
			stalled.Default, stalled.EBPF = agent.BackendEBPF, ebpf.New()
			return stalled
		})
	t.Cleanup(released) // before the agent stops: its pump waits for the hits

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const id = "transit"
	reader, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	spec := &fleet.Spec{
		ID:       id,
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(t, loopSrc, "process")},
		Capture:  fleet.DefaultCapture,
	}
	if err := c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	var first agent.Hit
	select {
	case first = <-stalled.first:
	case <-ctx.Done():
		t.Fatal("no hit within 2 minutes")
	}
	// Watermarks published from two seconds after its capture on: none
	// may pass it while it stalls.
	for {
		h, wm, err := reader.NextMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if wm == nil {
			t.Fatalf("a hit arrived while the first one stalls: %+v", h)
		}
		if wm.Time >= first.Time {
			t.Fatalf("a watermark at %v passed the hit captured at %v, stalled on its way to the agent", time.Unix(0, wm.Time), time.Unix(0, first.Time))
		}
		if published := wm.Time + int64(wm.Lag); published > first.Time+int64(2*time.Second) {
			break
		}
	}
	released()
	// The stalled hit arrives, then a watermark that passes it.
	for gotHit := false; ; {
		h, wm, err := reader.NextMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case wm == nil && h.Time == first.Time:
			gotHit = true
		case wm != nil && wm.Time > first.Time:
			if !gotHit {
				t.Fatalf("a watermark at %v passed the hit captured at %v before it arrived", time.Unix(0, wm.Time), time.Unix(0, first.Time))
			}
			return
		}
	}
}
