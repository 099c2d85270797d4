package lsp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestMain fails the run if a language server goroutine (or lease renewer)
// of the tests outlives them.
func TestMain(m *testing.M) {
	agenttest.Main(m, func() error {
		return testsupport.NoGoroutines(10*time.Second, "language server goroutines", "riptrace/lsp.", "fleet.(*Lease).renew")
	})
}

// loopDir is the target the tests trace: the agent's loop program.
const loopDir = "../agent/testdata/targets/loop"

// fleetEnv is a real fleet for one test: an in-process nats-server with
// JetStream, an agent with the Delve backend managing only this test's copy
// of the loop target, and that target running.
type fleetEnv struct {
	url    string
	c      *fleet.Client
	host   string
	exe    string // base name of this test's target binary
	dir    string // absolute directory of the target's source
	src    string // its main.go
	line   int    // 1-based line of the @trace(process) marker
	target *agenttest.Proc
}

var envSeq atomic.Int64

func newFleetEnv(t *testing.T) *fleetEnv {
	t.Helper()
	s := fleettest.RunServer(t)
	n := envSeq.Add(1)
	dir, err := filepath.Abs(loopDir)
	if err != nil {
		t.Fatal(err)
	}
	e := &fleetEnv{
		url:  s.ClientURL(),
		c:    fleettest.Connect(t, s),
		host: fmt.Sprintf("lsp-host-%d", n),
		exe:  fmt.Sprintf("lsp-test-%d-%d", os.Getpid(), n),
		dir:  dir,
		src:  filepath.Join(dir, "main.go"),
	}
	e.line = agenttest.MarkerLine(t, e.src, "process")
	bin := agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), e.exe)

	agenttest.RunAgent(t, s, agent.Config{Host: e.host, Processes: []string{e.exe}, Log: testLogger(t)}, nil)
	e.target = agenttest.Start(t, bin)
	return e
}

// declare declares a tracepoint at the marked line of the target for this
// test's processes, as a debug session or `riptrace trace` would.
func (e *fleetEnv) declare(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec := &fleet.Spec{
		ID:       "lsp-test",
		Location: fleet.Location{Path: "loop/main.go", Line: e.line},
		Selector: fleet.Selector{Processes: []string{e.exe}},
		Capture:  fleet.DefaultCapture,
		Limits:   fleet.Limits{MaxHitsPerSecond: 100},
	}
	if err := e.c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}
