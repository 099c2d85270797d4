package agenttest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// RunAgent runs a real agent with the Delve backend in the test process,
// connected to s, until the test ends or the returned stop is called. It
// returns once the agent has scanned its processes, written its heartbeat
// and answers on its subjects, so that the fleet lists it with them. Unset fields of cfg get
// test defaults: a 100 ms scan, the Delve backend's name, and a log that
// shows with -v only (log, if not nil, receives it too).
//
// The test binary must call delve.MaybeRunWorker first thing in TestMain:
// the backend runs its per-target workers as copies of it.
func RunAgent(t testing.TB, s *server.Server, cfg agent.Config, log io.Writer) (stop func()) {
	t.Helper()
	return RunAgentWith(t, s, cfg, log, nil)
}

// RunAgentWith is RunAgent with the eBPF backend too (nil: Delve alone),
// behind agent.Backends with default cfg.BackendName (auto or ebpf; the
// agent's own test packages construct it, as agent/ebpf imports this one).
func RunAgentWith(t testing.TB, s *server.Server, cfg agent.Config, log io.Writer, ebpfBackend agent.Backend) (stop func()) {
	t.Helper()
	return runAgent(t, s, cfg, log, ebpfBackend, nil)
}

// RunAgentWrapped is RunAgent with the agent's backend wrapped by wrap: a
// test that must hold the real backend at one step (an attach, say) until
// it has seen what happens meanwhile wraps it, rather than hope the step
// is slow.
func RunAgentWrapped(t testing.TB, s *server.Server, cfg agent.Config, log io.Writer, wrap func(agent.Backend) agent.Backend) (stop func()) {
	t.Helper()
	return runAgent(t, s, cfg, log, nil, wrap)
}

func runAgent(t testing.TB, s *server.Server, cfg agent.Config, log io.Writer, ebpfBackend agent.Backend, wrap func(agent.Backend) agent.Backend) (stop func()) {
	t.Helper()
	if cfg.ScanEvery == 0 {
		cfg.ScanEvery = 100 * time.Millisecond
	}
	if cfg.BackendName == "" {
		cfg.BackendName = "delve"
	}
	if cfg.Log == nil {
		var w io.Writer = io.Discard
		if log != nil {
			w = log
		}
		if testing.Verbose() {
			w = io.MultiWriter(w, os.Stderr)
		}
		cfg.Log = slog.New(slog.NewTextHandler(w, nil)).With("test", t.Name())
	}
	workerLog := io.Discard
	if testing.Verbose() {
		workerLog = os.Stderr
	}
	// The Delve backend behind the same Backends the riptrace binary uses,
	// so that what the agent passes through it (the stop budget, the time
	// stopped) is tested as it runs.
	backend := &agent.Backends{Default: agent.BackendDelve, Delve: delve.New(workerLog)}
	if ebpfBackend != nil {
		backend.Default, backend.EBPF = cfg.BackendName, ebpfBackend
		cfg.BackendName = strings.Join(backend.Names(), ",")
	}
	var b agent.Backend = backend
	if wrap != nil {
		b = wrap(backend)
	}
	a := agent.New(cfg, fleettest.Connect(t, s), b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent.Run: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Error("the agent did not stop within 60s")
			}
		})
	}
	t.Cleanup(stop)
	// Answering comes before the first scan and heartbeat; clients that
	// list the fleet (Client.Hosts: the debug adapter maps lines into the
	// revisions it finds there) see the agent only after both.
	c := fleettest.Connect(t, s)
	testsupport.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		hosts, err := c.Hosts(context.Background())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == a.Host() && !h.Gone && h.Profile != nil {
				return nil
			}
		}
		return fmt.Errorf("host %s is not listed with a profile among %d hosts", a.Host(), len(hosts))
	})
	return stop
}

// Main is TestMain for the packages whose tests build targets or run
// agents: it serves as a Delve worker when the backend re-runs the test
// binary, runs the tests, then, if they passed, the checks (leak checks,
// say), and removes the builds.
func Main(m *testing.M, checks ...func() error) {
	delve.MaybeRunWorker()
	code := m.Run()
	for _, check := range checks {
		if code != 0 {
			break
		}
		if err := check(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if err := RemoveBuilds(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// DetachAtCleanup detaches tg when the test ends, reading its hits
// meanwhile. A backend hands each hit over and waits for it to be taken, as
// the agent always does; a test that stopped reading (one that failed, say)
// would leave the Delve worker waiting for that, a tracer that never reaps
// the target once it is killed, and the test's own wait for the target
// would never end.
func DetachAtCleanup(t testing.TB, tg agent.Target) {
	t.Cleanup(func() {
		go func() {
			for range tg.Hits() {
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tg.Detach(ctx)
	})
}

// HeldAttach is an agent's real backend with its attach to one pid held
// until the test lets it go: an attach that takes as long as a loaded
// machine or a large service makes it, without waiting that long.
type HeldAttach struct {
	*agent.Backends
	pid      int
	started  chan struct{}
	release  func()
	released chan struct{}
	announce sync.Once
}

// RunAgentHolding runs an agent as RunAgent does, its attach to pid held
// until Release. The attach is let go when the test ends, before the agent
// stops (which waits for its attaches).
func RunAgentHolding(t testing.TB, s *server.Server, cfg agent.Config, log io.Writer, pid int) *HeldAttach {
	h := &HeldAttach{pid: pid, started: make(chan struct{}), released: make(chan struct{})}
	h.release = sync.OnceFunc(func() { close(h.released) })
	RunAgentWrapped(t, s, cfg, log, func(b agent.Backend) agent.Backend {
		h.Backends = b.(*agent.Backends)
		return h
	})
	t.Cleanup(h.release)
	return h
}

// Attach holds the attach to the held pid until Release.
func (h *HeldAttach) Attach(ctx context.Context, pid int) (agent.Target, error) {
	if pid == h.pid {
		h.announce.Do(func() { close(h.started) })
		select {
		case <-h.released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Backends.Attach(ctx, pid)
}

// Started is closed when the held attach begins.
func (h *HeldAttach) Started() <-chan struct{} { return h.started }

// Release lets the held attach go on.
func (h *HeldAttach) Release() { h.release() }
