// Command fleet is what `make bench-fleet` runs: it measures RipTrace's
// fleet at scale, with simulated agents standing for the machines this one
// cannot hold.
//
// It starts three `riptrace server` processes (bin/riptrace, `make build`)
// forming a NATS cluster on 127.0.0.1, with the hit stream and buckets at
// three replicas, and -agents simulated agents in this process, each on its
// own NATS connection speaking the agents' protocol through fleet (see
// simAgent). Then:
//
//   - a debug session: `riptrace dap` attached for three agents, with one
//     breakpoint they hit 20 times a second; its CPU and the servers' CPU
//     and memory over -idle, first with those three agents connected,
//     then with all: the session's cost should follow its three, and the
//     difference over the added agents is the servers' cost per agent;
//   - declare → installed: -declarations tracepoints declared one after the
//     other, each timed until every agent reports it installed, with when
//     the last agent had it and when the last status was stored;
//   - sustained hits: for each of -rates, every agent makes that many hits
//     a second of about -size bytes for -window and sends them as the
//     agent does (a window of acks that shrinks when they time out, a
//     buffer, resends under the same message id); the stream must hold
//     every hit made once (its count per host). The hits are those of a
//     breakpoint of a real debug session (`riptrace dap`, attached to
//     every agent), and a real language server (`riptrace lsp`, one for
//     all the runs) and the timeline (`riptrace timeline --json`, following
//     the tracepoint) read them too: each must show every stored hit, and
//     each run says how many each had, when, and at what CPU per hit; the
//     CPU of every process per stored hit says where the ceiling is and
//     which process is the bottleneck;
//   - failover: one server killed; the time until its agents are all on
//     the other two;
//   - the herd: the whole cluster restarted; the time until every agent is
//     connected again, and until a declaration reaches every one.
//
// It ends with one line per goal: met or not met, with the figure. Only
// processes started here are read or signalled, by pid.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/riptrace/riptrace/bench/internal/benchkit"
	"github.com/riptrace/riptrace/fleet"
)

var (
	agents       = flag.Int("agents", 1000, "simulated agents")
	declarations = flag.Int("declarations", 20, "tracepoints declared one after the other, each timed")
	ratesFlag    = flag.String("rates", "10,30,100", "hits a second each agent publishes in each sustained run, comma-separated; the last is the goal's")
	size         = flag.Int("size", 1024, "bytes of each hit")
	window       = flag.Duration("window", 10*time.Second, "the sustained run's `D`")
	idle         = flag.Duration("idle", 10*time.Second, "`D` over which the servers' and a debug session's costs are read with 3 agents, then all")
	bin          = flag.String("riptrace", "bin/riptrace", "the riptrace binary")
	onlyHits     = flag.Bool("sustained-only", false, "run only the sustained hits/s runs, not the debug session's CPU, declarations, failover nor the herd")
	readers      = flag.Bool("readers", true, "feed each sustained run's hits to a real debug session, language server and timeline; false measures the stream alone")
	readerWait   = flag.Duration("reader-wait", 60*time.Second, "how long after a sustained run's draining its readers have to show every stored hit")
)

// rates are -rates parsed.
var rates []int

func main() {
	flag.Parse()
	for _, f := range strings.Split(*ratesFlag, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r <= 0 {
			log.Fatalf("-rates %q: want positive numbers, comma-separated", *ratesFlag)
		}
		rates = append(rates, r)
	}
	log.SetFlags(0)
	log.SetPrefix("bench-fleet: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// server is one `riptrace server` process of the cluster.
type server struct {
	args []string
	cmd  *exec.Cmd
	url  string
	// streamReady receives when the server says the cluster has the
	// hit stream (JetStream is up), once.
	streamReady chan time.Time
}

func (s *server) start(ready string) error {
	s.cmd = exec.Command(*bin, s.args...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	lines := make(chan string)
	s.streamReady = make(chan time.Time, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "the cluster has the hit stream") {
				s.streamReady <- time.Now()
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	deadline := time.After(90 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, ready) {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("riptrace server %v did not say %q within 90s", s.args, ready)
		}
	}
}

func (s *server) kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type goal struct {
	name string
	met  bool
	text string
}

func run() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "bench-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("machine: %d CPUs; load average at start: %s\n", cpus(), benchkit.LoadAvg())

	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	var routes, urls []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	servers := make([]*server, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		servers[i] = &server{url: urls[i], args: []string{"server", "--name", fmt.Sprintf("n%d", i+1),
			"--listen", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--cluster", fmt.Sprintf("127.0.0.1:%d", ports[3+i]),
			"--routes", strings.Join(routes, ","), "--data", filepath.Join(dir, fmt.Sprintf("n%d", i+1))}}
		wg.Go(func() { errs[i] = servers[i].start("the cluster has the hit stream") })
	}
	wg.Wait()
	defer func() {
		for _, s := range servers {
			s.kill()
		}
	}()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	all := strings.Join(urls, ",")
	fmt.Printf("cluster: 3 servers at %s\n", all)
	c, err := fleet.Connect(ctx, all, fleet.ClientOptions{Name: "bench-fleet"})
	if err != nil {
		return err
	}
	defer c.Close()
	var goals []goal
	quiet := slog.New(slog.DiscardHandler)
	sims := make([]*simAgent, *agents)
	defer func() {
		for _, a := range sims {
			if a != nil {
				a.c.Close()
			}
		}
	}()
	co, err := writeCheckout(filepath.Join(dir, "checkout"))
	if err != nil {
		return err
	}
	if *onlyHits {
		if err := startSims(ctx, all, sims, 0, quiet); err != nil {
			return err
		}
	} else if goals, err = fleetGoals(ctx, c, servers, sims, all, co, quiet); err != nil {
		return err
	}

	// Sustained hits at each rate asked, the goal's last, into a debug
	// session, a language server and the timeline.
	var ls *lspServer
	if *readers {
		if ls, err = startLSP(all, co); err != nil {
			return err
		}
		defer ls.stop()
	}
	var ceiling float64
	var runs []sustained
	for i, r := range rates {
		res, err := sustain(ctx, c, servers, sims, all, co, ls, i, r)
		if err != nil {
			return err
		}
		if res.lost == 0 && res.dup == 0 && res.readersOK {
			ceiling = max(ceiling, res.stored)
		}
		runs = append(runs, res)
	}
	last := runs[len(runs)-1]
	name, into, cond := "sustained ≥ 100k hits/s of 1 KiB, 0 lost", "", ""
	if *readers {
		name = "sustained ≥ 100k hits/s of 1 KiB into a debug session, a language server and the timeline, 0 lost"
		into, cond = "; the readers had "+last.readersSaid, " (and every reader showing every hit)"
	}
	goals = append(goals, goal{name, last.stored >= 100_000 && last.lost == 0 && last.dup == 0 && last.readersOK,
		fmt.Sprintf("%.0f hits/s stored while %d were offered, %d lost, %d stored twice%s; the most stored with none lost%s: %.0f hits/s",
			last.stored, last.offered, last.lost, last.dup, into, cond, ceiling)})
	// Overload: offered more than the cluster stores, it stores about as
	// much as at the first rate, and every hit is stored once or counted
	// lost by its agent. The agents may count more than the stream lacks:
	// a hit in flight when an agent gives up may be stored yet.
	if len(runs) > 1 {
		base, ok := runs[0], true
		var figs []string
		for _, r := range runs {
			ok = ok && r.stored >= 0.8*base.stored && r.dup == 0 && r.lost <= r.counted
			figs = append(figs, fmt.Sprintf("%d/s offered: %.0f/s stored (%.0f%%), %d lost, %d counted lost by the agents, %d twice",
				r.offered, r.stored, 100*r.stored/max(base.stored, 1), r.lost, r.counted, r.dup))
		}
		goals = append(goals, goal{"overloaded, stored ≥ 80% of the first rate's, none lost uncounted", ok, strings.Join(figs, "; ")})
	}

	if !*onlyHits {
		if goals, err = failureGoals(ctx, c, servers, sims, urls, errs, goals); err != nil {
			return err
		}
	}

	fmt.Println()
	for _, g := range goals {
		state := "met"
		if !g.met {
			state = "not met"
		}
		fmt.Printf("%-60s %-8s %s\n", g.name, state, g.text)
	}
	return nil
}

// fleetGoals starts the simulated agents and measures a debug session's
// CPU with 3 of them and all, the servers' cost per agent, and declare →
// installed.
func fleetGoals(ctx context.Context, c *fleet.Client, servers []*server, sims []*simAgent, all string, co checkout, quiet *slog.Logger) ([]goal, error) {
	var goals []goal
	if err := startSims(ctx, all, sims[:3], 0, quiet); err != nil {
		return nil, err
	}
	session, err := traceThree(ctx, c, all, co, sims[:3])
	if err != nil {
		return nil, err
	}
	defer session.stop()
	fmt.Printf("debug session: traces one line on 3 agents, each hitting it %d times a second\n", sessionRate)
	a3 := measureIdle(servers, session, "3 agents")

	// The rest of the fleet, connected 50 at a time.
	t0 := time.Now()
	if err := startSims(ctx, all, sims[3:], 3, quiet); err != nil {
		return nil, err
	}
	fmt.Printf("agents: %d more connected in %s\n", *agents-3, time.Since(t0).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // the joins settle: not an assertion
	aN := measureIdle(servers, session, fmt.Sprintf("%d agents", *agents))
	session.stop()
	more := float64(*agents - 3)
	memPer := float64(aN.rss-a3.rss) / more
	cpuPer := (aN.serverCPU - a3.serverCPU) / more // of one CPU
	goals = append(goals, goal{"servers' memory per agent ≤ 1 MiB, CPU ≤ 0.1% of a CPU", memPer <= 1<<20 && cpuPer <= 0.001,
		fmt.Sprintf("%.0f KiB and %.3f%% of a CPU per agent over 3 servers (%d → %d MiB, %.0f%% → %.0f%% of a CPU)",
			memPer/1024, 100*cpuPer, a3.rss>>20, aN.rss>>20, 100*a3.serverCPU, 100*aN.serverCPU)})
	// The session reads the same hits in both windows: what more it
	// spends with the whole fleet connected is what the fleet costs it.
	ratio := aN.sessionCPU / max(a3.sessionCPU, 0.001)
	goals = append(goals, goal{fmt.Sprintf("a debug session's CPU follows its 3 agents (≤ 1.5× with %d)", *agents), ratio <= 1.5 && aN.sessionOut > 0,
		fmt.Sprintf("%.1f%% of a CPU with 3 agents, %.1f%% with %d (%.2f×); %d and %d console lines",
			100*a3.sessionCPU, 100*aN.sessionCPU, *agents, ratio, a3.sessionOut, aN.sessionOut)})

	// Declare → every agent installed, and where the time goes: until
	// the last agent had the tracepoint (the bucket's watch fanned out
	// to every agent), until the last status was stored (each agent's
	// write at three replicas), until this client saw the last one (its
	// status watch).
	var took, toDeliver, toStore []time.Duration
	for i := range *declarations {
		id := fmt.Sprintf("decl-%d", i)
		t0, d, err := declareAll(ctx, c, id)
		if err != nil {
			return nil, err
		}
		delivered, stored := phases.of(id)
		took, toDeliver, toStore = append(took, d), append(toDeliver, delivered.Sub(t0)), append(toStore, stored.Sub(t0))
	}
	p50, p99 := percentiles(took)
	d50, d99 := percentiles(toDeliver)
	s50, s99 := percentiles(toStore)
	fmt.Printf("declare → %d installed: p50 %s, p99 %s over %d declarations; the last agent had it at p50 %s, p99 %s; the last status stored at p50 %s, p99 %s; load average %s\n",
		*agents, ms(p50), ms(p99), len(took), ms(d50), ms(d99), ms(s50), ms(s99), benchkit.LoadAvg())
	goals = append(goals, goal{"declare → all installed ≤ 1 s (p50 and p99)", p99 <= time.Second,
		fmt.Sprintf("p50 %s, p99 %s, %d agents", ms(p50), ms(p99), *agents)})

	return goals, nil
}

// failureGoals kills one server, then restarts the whole cluster, and
// times the agents' reconnection each time.
func failureGoals(ctx context.Context, c *fleet.Client, servers []*server, sims []*simAgent, urls []string, errs []error, goals []goal) ([]goal, error) {
	var wg sync.WaitGroup
	// Failover: one server killed; its agents move to the other two.
	on1 := 0
	for _, a := range sims {
		if a.c.ConnectedURL() == urls[0] {
			on1++
		}
	}
	killed := time.Now()
	servers[0].kill()
	moved := waitAll(sims, urls[0], killed, 120*time.Second)
	fmt.Printf("failover: the %d agents on n1 all connected to n2 or n3 %s after n1 was killed; load average %s\n", on1, moved.Round(time.Millisecond), benchkit.LoadAvg())
	goals = append(goals, goal{"every agent reconnected ≤ 10 s after a server dies", moved < 10*time.Second, fmt.Sprintf("%s for the %d agents of n1", moved.Round(time.Millisecond), on1)})

	// The herd: the whole cluster restarted, every agent comes back at
	// once (NATS's own reconnect: 2 s apart, jittered by up to 100 ms).
	for _, s := range servers[1:] {
		s.kill()
	}
	for deadline := time.Now().Add(30 * time.Second); connected(sims) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	t0 := time.Now()
	var firstUp atomic.Pointer[time.Time]
	for i := range servers {
		wg.Go(func() {
			if errs[i] = servers[i].start("riptrace server ready"); errs[i] == nil {
				now := time.Now()
				firstUp.CompareAndSwap(nil, &now)
			}
		})
	}
	back := waitAll(sims, "", t0, 120*time.Second)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	back -= firstUp.Load().Sub(t0) // from the first server accepting connections
	// JetStream is back when a server says the cluster has the stream.
	var jsBack time.Duration
	select {
	case at := <-servers[0].streamReady:
		jsBack = at.Sub(t0)
	case at := <-servers[1].streamReady:
		jsBack = at.Sub(t0)
	case at := <-servers[2].streamReady:
		jsBack = at.Sub(t0)
	case <-time.After(120 * time.Second):
	}
	// Usable again: a declaration reaches every agent.
	var usable time.Duration
	for deadline := time.Now().Add(120 * time.Second); ; {
		if _, _, err := declareAll(ctx, c, "after-restart"); err == nil {
			usable = time.Since(t0)
			break
		} else if time.Now().After(deadline) {
			return nil, fmt.Errorf("after the restart: %w", err)
		}
	}
	fmt.Printf("herd: the 3 servers restarted; all %d agents connected %s after the first accepted connections; from the servers' start, JetStream was back after %s and a declaration installed on every agent after %s; load average %s\n",
		*agents, back.Round(time.Millisecond), jsBack.Round(time.Millisecond), usable.Round(time.Millisecond), benchkit.LoadAvg())
	goals = append(goals, goal{"every agent reconnected ≤ 10 s after the cluster restarts", back < 10*time.Second,
		fmt.Sprintf("%s; declaring reaches all again after %s", back.Round(time.Millisecond), usable.Round(time.Millisecond))})

	return goals, nil
}

// declareAll declares id on every host and returns when, and how long
// until every agent reported it installed; it removes it then.
func declareAll(ctx context.Context, c *fleet.Client, id string) (time.Time, time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ch, err := c.WatchStatus(wctx, id)
	if err != nil {
		return time.Time{}, 0, err
	}
	t0 := time.Now()
	if err := c.Declare(ctx, &fleet.Spec{ID: id, Location: fleet.Location{Path: "internal/orders/handler.go", Line: 88}, Capture: fleet.DefaultCapture}); err != nil {
		return time.Time{}, 0, err
	}
	if n := installedOnAll(ch); n < *agents {
		return time.Time{}, 0, fmt.Errorf("declaring %s: %d of %d agents installed it within 60s", id, n, *agents)
	}
	d := time.Since(t0)
	return t0, d, c.Remove(ctx, id)
}

// awaitInstalled waits until every agent reports tracepoint id installed,
// for up to 60 s.
func awaitInstalled(ctx context.Context, c *fleet.Client, id string) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ch, err := c.WatchStatus(wctx, id)
	if err != nil {
		return err
	}
	if n := installedOnAll(ch); n < *agents {
		return fmt.Errorf("%d of %d agents installed %s within 60s", n, *agents, id)
	}
	return nil
}

// installedOnAll reads statuses from ch until every agent reported its
// tracepoint installed, or ch ends, and returns how many did.
func installedOnAll(ch <-chan fleet.StatusEvent) int {
	installed := map[string]bool{}
	for ev := range ch {
		if ev.State == fleet.StateInstalled {
			installed[ev.Host] = true
		}
		if len(installed) == *agents {
			break
		}
	}
	return len(installed)
}

// waitAll returns how long after t0 every agent is connected, to another
// server than away if given, or limit.
func waitAll(sims []*simAgent, away string, t0 time.Time, limit time.Duration) time.Duration {
	for time.Since(t0) < limit {
		n := 0
		for _, a := range sims {
			if a.c.Connected() && a.c.ConnectedURL() != away {
				n++
			}
		}
		if n == len(sims) {
			return time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return limit
}

// connected counts the agents connected now.
func connected(sims []*simAgent) int {
	n := 0
	for _, a := range sims {
		if a.c.Connected() {
			n++
		}
	}
	return n
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// cpuTimes returns each server's user+system CPU seconds.
func cpuTimes(servers []*server) []float64 {
	out := make([]float64, len(servers))
	for i, s := range servers {
		out[i] = procCPU(s.cmd.Process.Pid)
	}
	return out
}

// procCPU returns the user+system CPU seconds of process pid; 0 if it
// cannot be read.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// serverRSS returns the servers' resident memory in bytes, summed.
func serverRSS(servers []*server) int64 {
	var total int64
	for _, s := range servers {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
		if err != nil {
			continue
		}
		for l := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

func cpus() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// startSims starts one simulated agent in each of dst, 50 at a time,
// named by their index from first.
func startSims(ctx context.Context, url string, dst []*simAgent, first int, log *slog.Logger) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	errs := make([]error, len(dst))
	for i := range dst {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			dst[i], errs[i] = startSim(ctx, url, fmt.Sprintf("sim-%04d", first+i), *size, log)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("starting the simulated agents: %w", err)
	}
	return nil
}

// sessionRate is how many times a second each of the debug session's
// three agents hits its line.
const sessionRate = 20

// sessionLine is the line the debug session of three agents traces;
// loadLine + i is the line of the i-th sustained run's hits, so that the
// language server, which reads every hit, counts each run's apart.
const (
	sessionLine = 88
	loadLine    = 100
)

// tracedSession is a debug adapter tracing one line on three simulated
// agents, which hit it until stop.
type tracedSession struct {
	*dapSession
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// traceThree starts a debug adapter with a breakpoint on the hosts of
// three, and has them hit its tracepoint from then on.
func traceThree(ctx context.Context, c *fleet.Client, url string, co checkout, three []*simAgent) (*tracedSession, error) {
	var hosts []string
	for _, a := range three {
		hosts = append(hosts, a.host)
	}
	d, err := startDAP(url, co, hosts, 0, sessionLine)
	if err != nil {
		return nil, err
	}
	id, err := d.tracepoint(ctx, c)
	if err != nil {
		d.stop()
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	ts := &tracedSession{dapSession: d, cancel: cancel}
	var cnt counts
	for _, a := range three {
		ts.wg.Go(func() { a.publish(pctx, id, sessionLine, sessionRate, time.Second, &cnt) })
	}
	// Its hits reach its console: a count a second after the first few.
	before := d.outputs.Load()
	for deadline := time.Now().Add(30 * time.Second); d.outputs.Load() < before+3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			ts.stop()
			return nil, fmt.Errorf("the debug session showed no hit of %s within 30s", id)
		}
	}
	return ts, nil
}

// stop stops the hits and the adapter.
func (ts *tracedSession) stop() {
	ts.once.Do(func() {
		ts.cancel()
		ts.wg.Wait()
		ts.dapSession.stop()
	})
}

// idleFigures are the servers' and the debug session's costs over a
// window in which only the session's three agents hit a line.
type idleFigures struct {
	rss        int64   // the servers' resident memory at the end, summed
	serverCPU  float64 // the servers' CPU, summed, in CPUs
	sessionCPU float64 // the debug adapter's, in CPUs
	sessionOut int64   // console lines the session showed
}

func measureIdle(servers []*server, s *tracedSession, label string) idleFigures {
	time.Sleep(time.Second) // what came before settles: not an assertion
	sum := func(xs []float64) (t float64) {
		for _, x := range xs {
			t += x
		}
		return t
	}
	srv0, ses0, out0 := sum(cpuTimes(servers)), s.cpu(), s.outputs.Load()
	t0 := time.Now()
	time.Sleep(*idle)
	el := time.Since(t0).Seconds()
	f := idleFigures{
		rss:        serverRSS(servers),
		serverCPU:  (sum(cpuTimes(servers)) - srv0) / el,
		sessionCPU: (s.cpu() - ses0) / el,
		sessionOut: s.outputs.Load() - out0,
	}
	fmt.Printf("%s, the session's 3 hitting its line, over %s: servers %.0f MiB, %.1f%% of a CPU; debug session %.1f%% of a CPU, %d console lines; load average %s\n",
		label, idle.String(), float64(f.rss)/(1<<20), 100*f.serverCPU, 100*f.sessionCPU, f.sessionOut, benchkit.LoadAvg())
	return f
}

// percentiles returns the p50 and p99 of ds, which it sorts.
func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(ds)
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)]
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// sustained is what one sustained run measured.
type sustained struct {
	offered   int64   // hits a second
	stored    float64 // hits a second acknowledged during the run
	lost, dup int64   // hits made and not stored; stored more often than made
	// counted is how many of the lost the agents counted: dropped from a
	// full buffer, or still kept when they stopped.
	counted int64
	// readersOK is whether every reader showed every stored hit, once
	// (true when the run had no readers); readersSaid says how many each
	// showed.
	readersOK   bool
	readersSaid string
}

// streamReader is one real reader of a sustained run's hits: what it
// shows so far, and its process's CPU.
type streamReader struct {
	name  string
	short string                // in the goal's line
	got   func() (int64, error) // hits it shows
	cpu   func() float64        // its process's CPU seconds so far

	cpu0, cpuRun float64       // CPU seconds at the run's start and end
	cpuEnd       float64       // when it showed every stored hit, or gave up
	n            int64         // hits it showed, last asked
	err          error         // the last asking failed
	done         bool          // it showed every stored hit
	after        time.Duration // when, after the draining ended
	note         string
}

// sustain has every agent make rate hits a second for -window and send
// them as the agent does, and, with -readers, has the hits read by a real
// debug session, whose breakpoint's tracepoint they are, the language
// server ls and the timeline. Every hit made must be stored once, by the
// stream's count per host: fewer are lost, more are stored twice; and
// each reader must show every stored hit within -reader-wait of the
// draining. nth numbers the run: its hits are at line loadLine+nth.
func sustain(ctx context.Context, c *fleet.Client, servers []*server, sims []*simAgent, url string, co checkout, ls *lspServer, nth, rate int) (sustained, error) {
	line := loadLine + nth
	var tp string
	var rs []*streamReader
	var d *dapSession
	var tl *timelineProc
	if *readers {
		var err error
		// The agents' limit, were they real, would let every hit through.
		if d, err = startDAP(url, co, nil, 2*rate, line); err != nil {
			return sustained{}, err
		}
		defer d.stop()
		if tp, err = d.tracepoint(ctx, c); err != nil {
			return sustained{}, err
		}
		// As an editor shows it: the breakpoint installed on every agent
		// before its hits begin.
		if err := awaitInstalled(ctx, c, tp); err != nil {
			return sustained{}, err
		}
		if tl, err = startTimeline(url, tp); err != nil {
			return sustained{}, err
		}
		defer tl.stop()
		rs = []*streamReader{
			// Its console's count lines, once a second: "(N in all)".
			{name: "the debug session (riptrace dap)", short: "the debug session", got: func() (int64, error) { return d.inAll.Load(), nil }, cpu: d.cpu},
			// The code lens of the run's line: "● N hits".
			{name: "the language server (riptrace lsp)", short: "the language server", got: func() (int64, error) { return ls.count(ctx, line) }, cpu: ls.cpu},
			// One JSON line a hit.
			{name: "the timeline (riptrace timeline)", short: "the timeline", got: func() (int64, error) { return tl.hits.Load(), nil }, cpu: tl.cpu},
		}
	} else {
		tp = fmt.Sprintf("load%d", rate)
		spec := &fleet.Spec{ID: tp, Location: fleet.Location{Path: "internal/orders/handler.go", Line: line}, Capture: fleet.DefaultCapture}
		if err := c.Declare(ctx, spec); err != nil {
			return sustained{}, err
		}
		defer c.Remove(ctx, tp)
	}
	lctx, lcancel := context.WithTimeout(ctx, *window)
	defer lcancel()
	cpu0 := cpuTimes(servers)
	self0 := selfCPU()
	for _, r := range rs {
		r.cpu0 = r.cpu()
	}
	start := time.Now()
	var load counts
	made := make([]int64, len(sims))
	const drainFor = 30 * time.Second
	var wg sync.WaitGroup
	for i, a := range sims {
		wg.Go(func() { made[i] = a.publish(lctx, tp, line, rate, drainFor, &load) })
	}
	<-lctx.Done()
	elapsed := time.Since(start)
	cpu1 := cpuTimes(servers)
	self1 := selfCPU()
	for _, r := range rs {
		r.cpuRun = r.cpu()
	}
	ackedInRun := load.acked.Load()
	wg.Wait() // the agents send what they kept
	drain := time.Since(start) - elapsed
	var total int64
	for _, n := range made {
		total += n
	}
	// The stream's own count says what was stored: a host's hits stored
	// fewer than made are lost, more are stored twice.
	stored, err := c.StoredHits(ctx, tp)
	if err != nil {
		return sustained{}, err
	}
	var res sustained
	var storedN int64
	for i, a := range sims {
		n := int64(stored[a.host])
		storedN += n
		res.lost += max(made[i]-n, 0)
		res.dup += max(n-made[i], 0)
	}
	res.offered = int64(len(sims)) * int64(rate)
	res.stored = float64(ackedInRun) / elapsed.Seconds()
	res.counted = load.dropped.Load() + load.left.Load()
	awaitReaders(rs, storedN)
	// Until here, the servers stored and delivered this run's hits, and
	// the agents sent them.
	cpuEnd, selfEnd, upTo := cpuTimes(servers), selfCPU(), time.Since(start)
	res.readersOK = true
	var said []string
	for _, r := range rs {
		res.readersOK = res.readersOK && r.n == storedN
		said = append(said, fmt.Sprintf("%s %d", r.short, r.n))
	}
	res.readersSaid = fmt.Sprintf("%s of %d stored", strings.Join(said, ", "), storedN)
	if d != nil {
		// The hits view (riptrace/hits) counts every hit of the
		// breakpoint; the console said so once a second.
		if n, err := d.hitsViewCount(); err != nil {
			rs[0].note = fmt.Sprintf("; its hits view did not answer: %v", err)
		} else {
			rs[0].note = fmt.Sprintf("; its hits view counts %d, its console said %d in all in %d output events", n, d.inAll.Load(), d.outputs.Load())
			res.readersOK = res.readersOK && n == storedN
		}
		if v, err := ls.values(ctx, line); err != nil {
			rs[1].note = fmt.Sprintf("; its inlay hints did not answer: %v", err)
		} else {
			rs[1].note = fmt.Sprintf("; its inlay hints show the last values %q", truncate(v, 60))
		}
		if said := ls.client.said(); said != "" {
			rs[1].note += "; it told the user: " + said
		}
		if n, first := tl.said(); n > 0 {
			rs[2].note = fmt.Sprintf("; %d lines on stderr, the first: %s", n, truncate(first, 100))
		}
	}

	fmt.Printf("sustained: offered %d hits/s of %d B from %d agents for %s; stored %.0f hits/s during it; %d made, %d acknowledged (the last %s after the run); the stream has %d lost (%d dropped from full buffers and %d still kept after %s of draining, counted by the agents), %d stored twice; load average %s\n",
		res.offered, len(fleet.Encode(&sims[0].hit)), len(sims), elapsed.Round(time.Millisecond), res.stored,
		total, load.acked.Load(), drain.Round(time.Millisecond), res.lost, load.dropped.Load(), load.left.Load(), drainFor, res.dup, benchkit.LoadAvg())
	fmt.Printf("  publishes of hits and watermarks %d, %d of them sent again (%d acks timed out, %d found in process, %d refused as too many; %d acks said stored already); %d batches carried %d hits (%.1f each, %.0f B a hit once packed)\n",
		load.sent.Load(), load.resent.Load(), load.timedOut.Load(), load.inProcess.Load(), load.tooMany.Load(), load.repeated.Load(),
		load.batches.Load(), load.batched.Load(), float64(load.batched.Load())/float64(max(load.batches.Load(), 1)),
		float64(load.batchBytes.Load())/float64(max(load.batched.Load(), 1)))
	fmt.Printf("  while overloaded (the run and its draining) %.0f hits/s stored; at the run's end the agents allowed %d hits in flight in all, and an ack took %s on average\n",
		float64(load.acked.Load())/(elapsed+drain).Seconds(), load.windows.Load(), ms(time.Duration(load.ackTime.Load()/int64(len(sims)))))
	if r := load.reasons(); r != "" {
		fmt.Printf("  failed sends and acks (each hit sent again): %s\n", r)
	}
	for _, r := range rs {
		cpuPer := 1e6 * (r.cpuEnd - r.cpu0) / float64(max(r.n, 1))
		switch {
		case r.done:
			fmt.Printf("  %s showed %d of the %d stored hits, all %s after the draining; %.0f%% of a CPU during the run, %.1f µs of CPU per hit shown%s\n",
				r.name, r.n, storedN, ms(r.after), 100*(r.cpuRun-r.cpu0)/elapsed.Seconds(), cpuPer, r.note)
		default:
			why := ""
			if r.err != nil {
				why = fmt.Sprintf(" (asking it: %v)", r.err)
			}
			fmt.Printf("  %s did not keep up: it showed %d of the %d stored hits %s after the draining%s; %.0f%% of a CPU during the run, %.1f µs of CPU per hit shown: about %.0f hits/s on one CPU%s\n",
				r.name, r.n, storedN, *readerWait, why, 100*(r.cpuRun-r.cpu0)/elapsed.Seconds(), cpuPer, 1e6/max(cpuPer, 0.001), r.note)
		}
	}

	fmt.Printf("  CPU over the run (%% of one CPU): ")
	for i := range servers {
		fmt.Printf("server n%d %.0f%%, ", i+1, 100*(cpu1[i]-cpu0[i])/elapsed.Seconds())
	}
	fmt.Printf("this process (the agents) %.0f%%", 100*(self1-self0)/elapsed.Seconds())
	for _, r := range rs {
		fmt.Printf(", %s %.0f%%", r.name, 100*(r.cpuRun-r.cpu0)/elapsed.Seconds())
	}
	fmt.Println()
	if storedN == 0 {
		return res, nil
	}
	// What a hit cost each process in CPU, from the run's start until
	// the readers were done or gave up: a stored hit the servers and the
	// agents, a hit shown each reader (which may still work on the hits
	// after the run). On this machine's CPUs with nothing else running,
	// the ceiling is where they add up to all of them.
	type cost struct {
		name   string
		perHit float64 // µs of CPU
	}
	var srv float64
	busiest, most := 0, 0.0
	for i := range servers {
		srv += cpuEnd[i] - cpu0[i]
		if cpuEnd[i]-cpu0[i] > most {
			busiest, most = i, cpuEnd[i]-cpu0[i]
		}
	}
	costs := []cost{
		{fmt.Sprintf("the 3 servers (together; n%d the busiest)", busiest+1), 1e6 * srv / float64(storedN)},
		{"the simulated agents (this process)", 1e6 * (selfEnd - self0) / float64(storedN)},
	}
	for _, r := range rs {
		costs = append(costs, cost{r.name, 1e6 * (r.cpuEnd - r.cpu0) / float64(max(r.n, 1))})
	}
	var sum float64
	var parts []string
	for _, k := range costs {
		sum += k.perHit
		parts = append(parts, fmt.Sprintf("%s %.1f µs", k.name, k.perHit))
	}
	fmt.Printf("  CPU per hit over the %s from the run's start until the readers were done: %s; on %d CPUs with nothing else running, %.0f hits/s\n",
		ms(upTo), strings.Join(parts, ", "), cpus(), 1e6*float64(cpus())/sum)
	// The bottleneck: a reader that could not show every hit, the
	// furthest behind; else the process that spent the most CPU per hit.
	// Readers stopped at the same hit point at what they share, the
	// servers' delivery, rather than at either process.
	var behind []*streamReader
	for _, r := range rs {
		switch {
		case r.done:
		case len(behind) == 0 || r.n < behind[0].n:
			behind = []*streamReader{r}
		case r.n == behind[0].n:
			behind = append(behind, r)
		}
	}
	switch len(behind) {
	case 0:
	case 1:
		fmt.Printf("  bottleneck: %s, which showed %d of %d stored hits %s after the draining\n", behind[0].name, behind[0].n, storedN, *readerWait)
	default:
		var names []string
		for _, r := range behind {
			names = append(names, r.name)
		}
		fmt.Printf("  bottleneck: %s all showed %d of %d stored hits %s after the draining: stopped at the same count, they are likely held by what they share, the servers' delivery of the stream, rather than by either process\n",
			strings.Join(names, " and "), behind[0].n, storedN, *readerWait)
	}
	if len(behind) == 0 {
		top := slices.MaxFunc(costs, func(a, b cost) int { return cmp.Compare(a.perHit, b.perHit) })
		fmt.Printf("  bottleneck: %s, %.1f µs of CPU per hit, %.0f%% of the CPU a hit cost\n", top.name, top.perHit, 100*top.perHit/sum)
	}
	return res, nil
}

// awaitReaders asks each reader how many hits it shows until each shows
// stored or -reader-wait passes, and notes when and at what CPU.
func awaitReaders(rs []*streamReader, stored int64) {
	drained := time.Now()
	for {
		pending := 0
		for _, r := range rs {
			if r.done {
				continue
			}
			r.n, r.err = r.got()
			if r.err == nil && r.n >= stored {
				r.done, r.after, r.cpuEnd = true, time.Since(drained), r.cpu()
				continue
			}
			pending++
		}
		if pending == 0 || time.Since(drained) > *readerWait {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, r := range rs {
		if !r.done {
			r.cpuEnd = r.cpu()
		}
	}
}

// truncate cuts s to n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
