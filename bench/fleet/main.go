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
//   - declare → installed: -declarations tracepoints declared one after the
//     other, each timed until every agent reports it installed;
//   - memory per agent: the servers' RSS with the agents connected, less
//     without, over the agents;
//   - sustained hits: every agent publishes -rate hits a second of about
//     -size bytes for -window, read by one filtered reader here; what the
//     agents had acknowledged and the reader read are compared, and the CPU
//     of each process over the window says where the ceiling is;
//   - a debug session's cost: while the load runs, three agents also
//     publish a tracepoint of their own, and two reader processes (this
//     program again) read for -window: one filtered on that tracepoint, as
//     a debug session reads, one reading every hit; their CPU is compared;
//   - reconnect: one server is killed and started again; the time until
//     every agent is connected again.
//
// It ends with one line per goal: met or not met, with the figure. Only
// processes started here are read or signalled, by pid.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
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

	"github.com/riptrace/riptrace/fleet"
)

var (
	agents       = flag.Int("agents", 1000, "simulated agents")
	declarations = flag.Int("declarations", 20, "tracepoints declared one after the other, each timed")
	rate         = flag.Int("rate", 100, "hits a second each agent publishes in the sustained run")
	size         = flag.Int("size", 1024, "bytes of each hit")
	window       = flag.Duration("window", 10*time.Second, "the sustained run's `D`")
	bin          = flag.String("riptrace", "bin/riptrace", "the riptrace binary")
	role         = flag.String("role", "", "internal: run as a reader process (session or all)")
	url          = flag.String("url", "", "internal: the reader's NATS URLs")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench-fleet: ")
	var err error
	if *role != "" {
		err = reader()
	} else {
		err = run()
	}
	if err != nil {
		log.Fatal(err)
	}
}

// server is one `riptrace server` process of the cluster.
type server struct {
	args []string
	cmd  *exec.Cmd
	url  string
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
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
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
				go io.Copy(io.Discard, out)
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
	fmt.Printf("machine: %d CPUs; load average at start: %s\n", cpus(), loadavg())

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
	rssBefore := serverRSS(servers)

	// The agents, connected 50 at a time.
	quiet := slog.New(slog.DiscardHandler)
	sims := make([]*simAgent, *agents)
	t0 := time.Now()
	sem := make(chan struct{}, 50)
	var serr error
	var emu sync.Mutex
	for i := range *agents {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			a, err := startSim(ctx, all, fmt.Sprintf("sim-%04d", i), *size, quiet)
			if err != nil {
				emu.Lock()
				serr = err
				emu.Unlock()
				return
			}
			sims[i] = a
		})
	}
	wg.Wait()
	if serr != nil {
		return fmt.Errorf("starting the simulated agents: %w", serr)
	}
	defer func() {
		for _, a := range sims {
			a.c.Close()
		}
	}()
	fmt.Printf("agents: %d connected in %s\n", *agents, time.Since(t0).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // settle before reading memory: not an assertion
	rssAfter := serverRSS(servers)
	perAgent := float64(rssAfter-rssBefore) / float64(*agents)

	c, err := fleet.Connect(ctx, all, fleet.ClientOptions{Name: "bench-fleet"})
	if err != nil {
		return err
	}
	defer c.Close()
	var goals []goal

	// Declare → every agent installed.
	var took []time.Duration
	for i := range *declarations {
		d, err := declareAll(ctx, c, fmt.Sprintf("decl-%d", i))
		if err != nil {
			return err
		}
		took = append(took, d)
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[min(len(took)-1, len(took)*99/100)]
	fmt.Printf("declare → %d installed: p50 %s, p99 %s over %d declarations\n", *agents, p50.Round(time.Millisecond), p99.Round(time.Millisecond), len(took))
	goals = append(goals, goal{"declare → all installed ≤ 1 s (p50 and p99)", p99 <= time.Second,
		fmt.Sprintf("p50 %s, p99 %s, %d agents", p50.Round(time.Millisecond), p99.Round(time.Millisecond), *agents)})

	// Sustained hits, with a session's tracepoint on three agents.
	for _, id := range []string{"load", "traced3"} {
		spec := &fleet.Spec{ID: id, Location: fleet.Location{Path: "internal/orders/handler.go", Line: 88}, Capture: fleet.DefaultCapture}
		if id == "traced3" {
			spec.Selector.Hosts = []string{"sim-0000", "sim-0001", "sim-0002"}
		}
		if err := c.Declare(ctx, spec); err != nil {
			return err
		}
	}
	hits, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{"load"}})
	if err != nil {
		return err
	}
	self, _ := os.Executable()
	readers := map[string]*exec.Cmd{}
	readerOut := map[string]*strings.Builder{}
	for _, r := range []string{"session", "all"} {
		cmd := exec.Command(self, "-role", r, "-url", all, "-window", window.String())
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		readers[r], readerOut[r] = cmd, out
	}
	lctx, lcancel := context.WithTimeout(ctx, *window)
	defer lcancel()
	cpu0 := cpuTimes(servers)
	self0 := selfCPU()
	start := time.Now()
	var load, traced counts
	for _, a := range sims {
		wg.Go(func() { a.publish(lctx, "load", *rate, &load) })
	}
	for _, a := range sims[:3] {
		wg.Go(func() { a.publish(lctx, "traced3", 20, &traced) })
	}
	var read atomic.Int64
	go func() {
		for {
			if _, err := hits.Next(ctx); err != nil {
				return
			}
			read.Add(1)
		}
	}()
	<-lctx.Done()
	elapsed := time.Since(start)
	cpu1 := cpuTimes(servers)
	self1 := selfCPU()
	wg.Wait() // the acks of what was sent
	drain := time.Since(start) - elapsed
	acked, failed := load.acked.Load(), load.failed.Load()
	readAtEnd := read.Load()
	// What was acknowledged must all be read: wait for the tail.
	deadline := time.Now().Add(30 * time.Second)
	for read.Load() < acked && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	hits.Close()
	// A hit whose ack timed out may be stored all the same: it is counted
	// failed by its agent, and read here. Lost is what was acknowledged
	// and not read; extra is what was read beyond the acknowledged.
	lost, extra := max(acked-read.Load(), 0), max(read.Load()-acked, 0)
	offered := int64(*agents) * int64(*rate)
	got := float64(acked) / elapsed.Seconds()
	fmt.Printf("sustained: offered %d hits/s of %d B from %d agents for %s; stored %.0f hits/s (%d acknowledged, the last %s after the run; %d failed to send), read %.0f hits/s during the run; 30 s after, %d acknowledged not read (lost), %d read whose ack had failed\n",
		offered, len(sims[0].hit), *agents, elapsed.Round(time.Millisecond), got, acked, drain.Round(time.Millisecond), failed, float64(readAtEnd)/elapsed.Seconds(), lost, extra)
	fmt.Printf("CPU over the run (%% of one CPU): ")
	for i := range servers {
		fmt.Printf("server n%d %.0f%%, ", i+1, 100*(cpu1[i]-cpu0[i])/elapsed.Seconds())
	}
	fmt.Printf("this process (agents + reader) %.0f%%; load average %s\n", 100*(self1-self0)/elapsed.Seconds(), loadavg())
	goals = append(goals, goal{"sustained ≥ 100k hits/s of 1 KiB, 0 lost", got >= 100_000 && lost == 0 && failed == 0,
		fmt.Sprintf("%.0f hits/s stored, %d lost, %d sends failed (%d of them stored all the same)", got, lost, failed, extra)})

	for r, cmd := range readers {
		cmd.Wait()
		fmt.Printf("reader %s: %s", r, readerOut[r].String())
	}
	sess, allr := parseReader(readerOut["session"].String()), parseReader(readerOut["all"].String())
	goals = append(goals, goal{"a debug session's CPU follows its 3 agents, not the fleet", sess.msgs > 0 && sess.cpu < allr.cpu/10,
		fmt.Sprintf("session %d messages, %.2f s CPU; a reader of every hit %d messages, %.2f s CPU", sess.msgs, sess.cpu, allr.msgs, allr.cpu)})

	goals = append(goals, goal{"server memory per agent", true, fmt.Sprintf("%.0f KiB per agent over 3 servers (%d → %d MiB)", perAgent/1024, rssBefore>>20, rssAfter>>20)})

	// Reconnect: kill one server and start it again.
	servers[0].kill()
	down := waitAll(sims, 120*time.Second)
	if err := servers[0].start("riptrace server ready"); err != nil {
		return err
	}
	fmt.Printf("reconnect: every agent connected again %s after n1 was killed\n", down.Round(time.Millisecond))
	goals = append(goals, goal{"time for every agent to reconnect after a server dies", down < 10*time.Second, down.Round(time.Millisecond).String()})

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

// declareAll declares id on every host and returns how long until every
// agent reported it installed; it removes it then.
func declareAll(ctx context.Context, c *fleet.Client, id string) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ch, err := c.WatchStatus(wctx, id)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := c.Declare(ctx, &fleet.Spec{ID: id, Location: fleet.Location{Path: "internal/orders/handler.go", Line: 88}, Capture: fleet.DefaultCapture}); err != nil {
		return 0, err
	}
	installed := map[string]bool{}
	for ev := range ch {
		if ev.State == fleet.StateInstalled {
			installed[ev.Host] = true
		}
		if len(installed) == *agents {
			d := time.Since(t0)
			return d, c.Remove(ctx, id)
		}
	}
	return 0, fmt.Errorf("declaring %s: %d of %d agents installed it within 60s", id, len(installed), *agents)
}

// waitAll returns how long until every agent is connected.
func waitAll(sims []*simAgent, limit time.Duration) time.Duration {
	t0 := time.Now()
	// Let the kill be noticed first.
	for time.Since(t0) < limit {
		n := 0
		for _, a := range sims {
			if a.c.Connected() && a.c.ConnectedURL() != "" {
				n++
			}
		}
		if n == len(sims) && time.Since(t0) > 100*time.Millisecond {
			return time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return limit
}

// reader is a reader process: role session reads the tracepoint traced3
// as a debug session does (through the timeline, filtered), role all reads
// every hit; both print their message count and CPU time.
func reader() error {
	ctx := context.Background()
	c, err := fleet.Connect(ctx, *url, fleet.ClientOptions{Name: "bench-fleet " + *role})
	if err != nil {
		return err
	}
	defer c.Close()
	opts := fleet.HitOptions{}
	if *role == "session" {
		opts.Tracepoints = []string{"traced3"}
	}
	r, err := c.Hits(ctx, opts)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, *window)
	defer cancel()
	n := 0
	for {
		_, _, err := r.NextMessage(rctx)
		if err != nil {
			if rctx.Err() != nil {
				break
			}
			continue
		}
		n++
	}
	fmt.Printf("%d messages, %.2f s CPU\n", n, selfCPU())
	return nil
}

type readerResult struct {
	msgs int
	cpu  float64
}

func parseReader(s string) readerResult {
	var r readerResult
	fmt.Sscanf(s, "%d messages, %f s CPU", &r.msgs, &r.cpu)
	return r
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
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out[i] = (ut + st) / 100 // USER_HZ
	}
	return out
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

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
