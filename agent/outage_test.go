package agent_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/ebpf"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

const pacedDir = "testdata/targets/paced"

var pacedSrc = filepath.Join(pacedDir, "main.go")

// pacedTarget builds the paced target under a name of the test's own, for
// an agent that watches it on a host of its own: it returns the test's
// number (for ids), the host, the executable's name and its path.
func pacedTarget(t testing.TB, name string) (n int64, host, exe, bin string) {
	t.Helper()
	n = hostSeq.Add(1)
	host, exe = fmt.Sprintf("%s-%d", name, n), fmt.Sprintf("paced-%s-%d-%d", name, os.Getpid(), n)
	return n, host, exe, agenttest.Alias(t, agenttest.BuildTarget(t, pacedDir, agenttest.NoOpt), exe)
}

// tickSpec traces the paced target's tick in process pid, its argument
// captured, at most perSecond hits a second.
func tickSpec(t testing.TB, id string, pid, perSecond int) *fleet.Spec {
	return &fleet.Spec{
		ID:       id,
		Location: fleet.Location{Path: "paced/main.go", Line: agenttest.MarkerLine(t, pacedSrc, "tick")},
		Selector: fleet.Selector{Pids: []int{pid}},
		Capture:  fleet.Capture{Args: true},
		Limits:   fleet.Limits{MaxHitsPerSecond: perSecond},
	}
}

// restartable is an embedded server (as `riptrace server` runs it) that a
// test can stop and start again on the same port and file store.
type restartable struct {
	t      *testing.T
	dir    string
	listen string
	srv    *fleet.Server
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{t: t, dir: t.TempDir(), listen: "127.0.0.1:-1"}
	t.Cleanup(func() {
		if r.srv != nil {
			r.srv.Shutdown()
		}
	})
	r.start()
	r.listen = fmt.Sprintf("127.0.0.1:%d", r.srv.Addr().(*net.TCPAddr).Port)
	return r
}

func (r *restartable) start() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: r.listen, DataDir: r.dir})
	if err != nil {
		r.t.Fatalf("starting nats-server on %s with the store in %s: %v", r.listen, r.dir, err)
	}
	r.srv = srv
}

func (r *restartable) stop() {
	r.srv.Shutdown()
	r.srv = nil
}

// connect opens a fleet client on the server as it runs now.
func (r *restartable) connect() *fleet.Client {
	r.t.Helper()
	return fleettest.Connect(r.t, r.srv.Server)
}

// metric returns the value of the agent metric name (with the tracepoint
// label, if tracepoint is not empty) gathered from reg; 0 if absent.
func metric(t *testing.T, reg *prometheus.Registry, name, tracepoint string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if tracepoint != "" {
				match := false
				for _, l := range m.GetLabel() {
					match = match || l.GetName() == "tracepoint" && l.GetValue() == tracepoint
				}
				if !match {
					continue
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func awaitStatusOn(t *testing.T, c *fleet.Client, id string, ok func(fleet.StatusEvent) bool) fleet.StatusEvent {
	t.Helper()
	h := &harness{t: t, c: c}
	return h.awaitStatus(id, ok)
}

func gone(pid int) func(fleet.StatusEvent) bool {
	return func(ev fleet.StatusEvent) bool { return ev.Pid == pid && ev.Deleted }
}

// readUntil reads the hits of tracepoint id in the stream, from the first,
// until one for which last is true.
func readUntil(t *testing.T, c *fleet.Client, id string, last func(fleet.Hit) bool) []fleet.Hit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{id}, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var hits []fleet.Hit
	for {
		h, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("reading hit %d of %s: %v", len(hits)+1, id, err)
		}
		hits = append(hits, h)
		if last(h) {
			return hits
		}
	}
}

// stepCalls returns how many calls the paced target p has made by its last
// STEP line.
func stepCalls(t *testing.T, p *agenttest.Proc) int {
	t.Helper()
	out := p.Output()
	i := strings.LastIndex(out, "STEP n=")
	n, err := strconv.Atoi(strings.Fields(out[i+len("STEP n="):])[0])
	if err != nil {
		t.Fatalf("reading the STEP line of %d: %v\n%s", p.Pid, err, out)
	}
	return n
}

// missingCalls checks that hits carry consecutive values of the paced
// target's counter, each gap matched by the dropped count of the hit after
// it, and returns how many calls are missing.
func missingCalls(t *testing.T, hits []fleet.Hit) (missing uint64) {
	t.Helper()
	prev := -1
	for i, h := range hits {
		v := fleettest.Var(h.Args, "seq")
		if v == nil {
			t.Fatalf("hit %d (#%d) has no argument seq: %+v", i, h.Seq, h.Args)
		}
		seq, err := strconv.Atoi(v.Value)
		if err != nil {
			t.Fatalf("hit %d (#%d): seq = %q: %v", i, h.Seq, v.Value, err)
		}
		if i > 0 {
			if seq <= prev {
				t.Fatalf("hit %d (#%d) has seq %d after %d: out of order or twice\nbefore: %+v\nthis: %+v", i, h.Seq, seq, prev, hits[i-1], h)
			}
			if gap := uint64(seq - prev - 1); gap != h.Dropped {
				t.Errorf("hit %d (#%d, seq %d) says %d dropped before it, but %d calls are missing", i, h.Seq, seq, h.Dropped, gap)
			}
			missing += uint64(seq - prev - 1)
		}
		prev = seq
	}
	return missing
}

// A NATS server restart mid-traffic: the agent keeps the hits meanwhile and
// delivers them in order once the server is back; the tracepoints declared
// and removed while it was reconnecting are applied. With the default buffer
// a 10 s outage at 1k hits/s loses nothing; with a small one the exact number
// lost is reported.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	t.Run("buffered", func(t *testing.T) { testNATSRestart(t, 10*time.Second, 0) })
	t.Run("overflow", func(t *testing.T) { testNATSRestart(t, 3*time.Second, 200) })
}

func testNATSRestart(t *testing.T, outage time.Duration, bufferHits int) {
	ns := startRestartable(t)
	n, host, exe, bin := pacedTarget(t, "outage")
	reg := prometheus.NewRegistry()
	var log syncBuffer
	// The eBPF backend where it runs: it keeps up with 1k hits/s without
	// stopping the target, which the Delve backend on a loaded 2-CPU
	// machine does not (590-890 hits/s measured).
	cfg := agent.Config{
		Host: host, Processes: []string{exe}, HeartbeatEvery: time.Second,
		BufferHits: bufferHits, Metrics: reg,
	}
	var eb agent.Backend
	if ebpf.Available() == nil {
		eb, cfg.BackendName = ebpf.New(), agent.BackendEBPF
	}
	agenttest.RunAgentWith(t, ns.srv.Server, cfg, &log, eb)
	c := ns.connect()
	// p runs the traffic; q carries the tracepoints that change during the
	// outage, so that installing them never stops p (see the report on
	// hits counted twice when a Set interrupts a hit).
	p := agenttest.Start(t, bin)
	q := agenttest.Start(t, bin, "-rate", "10")

	spec := func(id, marker string, pid int) *fleet.Spec {
		return &fleet.Spec{
			ID:       fmt.Sprintf("%s-%d", id, n),
			Location: fleet.Location{Path: "paced/main.go", Line: agenttest.MarkerLine(t, pacedSrc, marker)},
			Selector: fleet.Selector{Pids: []int{pid}},
			Capture:  fleet.Capture{Args: true},
			Limits:   fleet.Limits{MaxHitsPerSecond: 5000},
		}
	}
	tick, old, added := spec("tick", "tick", p.Pid), spec("old", "tick", q.Pid), spec("added", "second", q.Pid)
	for _, s := range []*fleet.Spec{tick, old} {
		if err := c.Declare(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		awaitStatusOn(t, c, s.ID, installed(s.Selector.Pids[0]))
	}
	// On a loaded machine the agent's hit decoding, which runs at nice 19,
	// may take a while to get going.
	testsupport.CheckFor(t, 2*time.Minute, 10*time.Millisecond, func() error {
		if got := metric(t, reg, "riptrace_hits_total", tick.ID); got < 500 {
			return fmt.Errorf("%v hits delivered, waiting for 500 before the outage", got)
		}
		return nil
	})

	ns.stop()
	before := metric(t, reg, "riptrace_hits_total", tick.ID)
	time.Sleep(outage) // the outage itself
	buffered := metric(t, reg, "riptrace_hits_buffered", "")
	ns.start()
	restarted := time.Now()
	if buffered == 0 {
		t.Fatalf("no hit buffered during a %v outage; agent log:\n%s", outage, log.String())
	}

	// While the agent reconnects, the desired state changes.
	c = ns.connect()
	if err := c.Remove(context.Background(), old.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Declare(context.Background(), added); err != nil {
		t.Fatal(err)
	}

	testsupport.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if got := metric(t, reg, "riptrace_hits_total", tick.ID); got < before+buffered {
			return fmt.Errorf("%v hits delivered, want %v delivered before the outage + %v buffered", got, before, buffered)
		}
		return nil
	})
	recovered := time.Since(restarted)
	awaitStatusOn(t, c, added.ID, installed(q.Pid))
	awaitStatusOn(t, c, old.ID, gone(q.Pid))
	reconciled := time.Since(restarted)

	// Stop the traffic before counting. On a loaded machine the agent may
	// take and publish hits slower than the target calls, so that with a
	// small buffer hits go on being lost long after the outage: the counts
	// settle only once the calls stop and the agent has handled every hit
	// taken before. A hit of p taken after the pause, in the stream, says
	// so: the hits of one process travel in order, through the backend and
	// the agent's buffer. One more call then leaves a last hit that carries
	// every loss and drop before it.
	if err := p.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	p.WaitOutput(t, "PAUSED", 10*time.Second)
	mark := spec("mark", "second", p.Pid)
	if err := c.Declare(context.Background(), mark); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, mark.ID, func(fleet.Hit) bool { return true })
	if err := p.Cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	p.WaitOutput(t, "STEP", 10*time.Second)
	last := strconv.Itoa(stepCalls(t, p) - 1)
	hits := readUntil(t, c, tick.ID, func(h fleet.Hit) bool {
		v := fleettest.Var(h.Args, "seq")
		return v != nil && v.Value == last
	})

	lost := metric(t, reg, "riptrace_hits_lost_total", tick.ID)
	if bufferHits > 0 {
		want := fmt.Sprintf("%d hits lost in all", int(lost))
		awaitStatusOn(t, c, tick.ID, func(ev fleet.StatusEvent) bool {
			return ev.Pid == p.Pid && strings.Contains(ev.Message, want) && ev.Dropped >= uint64(lost)
		})
	}
	if err := c.Remove(context.Background(), tick.ID); err != nil {
		t.Fatal(err)
	}
	awaitStatusOn(t, c, tick.ID, gone(p.Pid))
	missing := missingCalls(t, hits)
	dropped := metric(t, reg, "riptrace_hits_dropped_total", tick.ID)
	lost = metric(t, reg, "riptrace_hits_lost_total", tick.ID)
	t.Logf("outage %v: %v hits delivered before it, %v buffered during it, all delivered %v after the restart, tracepoint changes applied after %v; %d hits in the stream, %d calls missing (%v lost to the full buffer, %v dropped by the backend)",
		outage, before, buffered, recovered.Round(time.Millisecond), reconciled.Round(time.Millisecond), len(hits), missing, lost, dropped)
	switch {
	case bufferHits == 0 && lost != 0:
		// What the buffer is for. Hits the backend dropped (a full ring
		// buffer when the machine leaves the agent no CPU) are counted
		// below with the rest.
		t.Errorf("%v hits lost with the default buffer; want none", lost)
	case bufferHits > 0 && lost == 0:
		t.Errorf("a %v outage at 1k hits/s lost no hit with a buffer of %d", outage, bufferHits)
	}
	if float64(missing) != lost+dropped {
		t.Errorf("%d calls missing from the stream, but the agent counted %v lost and %v dropped", missing, lost, dropped)
	}
	stillRunning(t, p)
	stillRunning(t, q)
	if t.Failed() {
		t.Logf("agent log:\n%s", log.String())
	}
}
