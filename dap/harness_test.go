package dap_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/dap/daptest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

func TestMain(m *testing.M) { agenttest.Main(m, checkNoSessionLeak) }

// checkNoSessionLeak fails the run if any goroutine of a DAP session
// outlives every test (nats-server's checkNoGoroutineLeak, by package).
func checkNoSessionLeak() error {
	return testsupport.NoGoroutines(10*time.Second, "goroutines of DAP sessions",
		"riptrace/riptrace/dap.(*session)", "riptrace/riptrace/dap.(*Server)")
}

const loopDir = "../agent/testdata/targets/loop"

// loopSrc is the target's source as the editor names it: an absolute path
// in the checkout.
var loopSrc, _ = filepath.Abs(filepath.Join(loopDir, "main.go"))

// repoRoot is the local checkout the sessions map files into.
var repoRoot, _ = filepath.Abs("..")

// fleetEnv is one real NATS server, optionally a real agent on it, and a
// fleet client to look at what the adapter did.
type fleetEnv struct {
	t    testing.TB
	srv  *server.Server
	c    *fleet.Client
	host string
	bin  string // the loop target
}

var seq atomic.Int64

// newFleet starts a NATS server; with agent it also starts an agent that
// manages only processes named by the exes this test makes with exe, so
// parallel tests never trace each other's targets.
func newFleet(t testing.TB) *fleetEnv {
	t.Helper()
	s := fleettest.RunServer(t)
	return &fleetEnv{t: t, srv: s, c: fleettest.Connect(t, s), host: fmt.Sprintf("dap-host-%d", seq.Add(1))}
}

// exe returns a unique executable name for this test's target called role.
func (f *fleetEnv) exe(role string) string {
	return fmt.Sprintf("%s-%d-%d", role, os.Getpid(), seq.Add(1))
}

// startAgent starts an agent on host that manages processes named exes.
func (f *fleetEnv) startAgent(host string, exes ...string) {
	t := f.t
	t.Helper()
	agenttest.RunAgent(t, f.srv, agent.Config{Host: host, Processes: exes}, nil)
}

// startTarget starts the loop target under the executable name exe.
func (f *fleetEnv) startTarget(exe string, args ...string) *agenttest.Proc {
	f.t.Helper()
	if f.bin == "" {
		f.bin = agenttest.BuildTarget(f.t, loopDir)
	}
	return agenttest.Start(f.t, agenttest.Alias(f.t, f.bin, exe), args...)
}

// session starts a DAP session with a server of its own on an in-memory
// connection and returns the client.
func (f *fleetEnv) session() *daptest.Client {
	f.t.Helper()
	return startSession(f.t)
}

// startSession is session without a fleet: the test says where to attach.
func startSession(t testing.TB) *daptest.Client {
	t.Helper()
	return startSessionOptions(t, dap.Options{})
}

// startSessionOptions is startSession with a server of opts.
func startSessionOptions(t testing.TB, opts dap.Options) *daptest.Client {
	t.Helper()
	opts.Log, opts.LeaseTTL = slog.New(slog.NewTextHandler(io.Discard, nil)), 30*time.Second
	srv := dap.NewServer(opts)
	cs, ss := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ss, ss); ss.Close() }()
	t.Cleanup(func() {
		cs.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the DAP session did not end within 30s of its connection closing")
		}
	})
	return daptest.NewClient(cs, cs)
}

// attach runs initialize and attach with the given configuration; the
// fleet's URL and the checkout are filled in.
func (f *fleetEnv) attach(c *daptest.Client, cfg map[string]any) {
	t := f.t
	t.Helper()
	// 1 >> initialize, << initialize
	c.Send(t, "initialize", map[string]any{"adapterID": "riptrace", "linesStartAt1": true, "pathFormat": "path", "supportsProgressReporting": true})
	caps := c.ExpectInitializeResponse(t).Body
	if !caps.SupportsConfigurationDoneRequest || !caps.SupportsConditionalBreakpoints || !caps.SupportsHitConditionalBreakpoints || !caps.SupportsLogPoints || !caps.SupportsFunctionBreakpoints {
		t.Fatalf("capabilities = %+v, want configurationDone, conditions, hit conditions, logpoints and function breakpoints", caps)
	}
	// 2 >> attach, << attach, << initialized
	// Every hit in the console unless the test says otherwise: most tests
	// read hits from output events (TestConsoleSummary tests the default).
	args := map[string]any{"type": "riptrace", "request": "attach", "name": t.Name(), "nats": f.srv.ClientURL(), "cwd": repoRoot, "consoleHits": "all"}
	for k, v := range cfg {
		args[k] = v
	}
	c.Send(t, "attach", args)
	c.ExpectAttachResponse(t)
	c.ExpectInitializedEvent(t)
}

// setBreakpoints sets bps in file and returns the response's breakpoints.
func setBreakpoints(t testing.TB, c *daptest.Client, file string, bps ...godap.SourceBreakpoint) []godap.Breakpoint {
	t.Helper()
	c.Send(t, "setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: file}, Breakpoints: bps})
	got := c.ExpectSetBreakpointsResponse(t).Body.Breakpoints
	if len(got) != len(bps) {
		t.Fatalf("setBreakpoints answered %d breakpoints for %d", len(got), len(bps))
	}
	return got
}

// hitOf decodes the hit an output event carries.
func hitOf(t testing.TB, e *godap.OutputEvent) fleet.Hit {
	t.Helper()
	var h fleet.Hit
	if err := json.Unmarshal(e.Body.Data, &h); err != nil {
		t.Fatalf("output event data is not a hit: %v: %s", err, e.Body.Data)
	}
	return h
}

// attached reports whether the host's agent is attached to pid.
func (f *fleetEnv) attached(host string, pid int) (bool, error) {
	p, err := f.c.Profile(context.Background(), host)
	if err != nil {
		return false, err
	}
	for _, proc := range p.Processes {
		if proc.Pid == pid {
			return proc.Attached, nil
		}
	}
	return false, fmt.Errorf("pid %d is not in %s's profile", pid, host)
}

// declared lists the ids of the fleet's declared tracepoints.
func (f *fleetEnv) declared() []string {
	f.t.Helper()
	specs, err := f.c.Tracepoints(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for _, s := range specs {
		ids = append(ids, s.ID)
	}
	return ids
}

// stillRunning checks that p kept running: it prints a new ALIVE line.
func stillRunning(t testing.TB, p *agenttest.Proc) {
	t.Helper()
	if !p.Alive() {
		t.Fatalf("target %d died; its output:\n%s", p.Pid, p.Output())
	}
	n := strings.Count(p.Output(), "ALIVE")
	testsupport.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if strings.Count(p.Output(), "ALIVE") <= n {
			return errors.New("no new ALIVE line")
		}
		return nil
	})
}
