package delve_test

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
)

// attachTo starts the target in dir (built without optimizations when
// noopt) with args, and attaches b to it (a plain backend when nil), logging
// Delve's output with -v. The target is detached when the test ends; ctx
// ends two minutes from now.
func attachTo(t *testing.T, b *delve.Backend, dir string, noopt bool, args ...string) (ctx context.Context, p *agenttest.Proc, tg agent.Target) {
	t.Helper()
	var flags []string
	if noopt {
		flags = append(flags, agenttest.NoOpt)
	}
	bin := agenttest.BuildTarget(t, dir, flags...)
	p = agenttest.Start(t, bin, args...)
	if b == nil {
		log := io.Discard
		if testing.Verbose() {
			log = os.Stderr
		}
		b = delve.New(log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	tg, err := b.Attach(ctx, p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	agenttest.DetachAtCleanup(t, tg)
	return ctx, p, tg
}

// pacedSpec is a tracepoint at paced's marker that captures seq.
func pacedSpec(t *testing.T, id, marker string) fleet.Spec {
	return fleet.Spec{
		ID:       id,
		Location: fleet.Location{Path: "paced/main.go", Line: agenttest.MarkerLine(t, pacedDir+"/main.go", marker)},
		Capture:  fleet.Capture{Exprs: []string{"seq"}},
	}
}
