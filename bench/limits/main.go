// Command limits is what `make bench-limits` runs: it measures what a
// tracepoint on a hot loop costs a service that serves HTTP, and what the
// tracepoint limits save.
//
// One target (bench/targets/httphot, built optimized) serves GET /work?n=N,
// which runs a loop of N calls to a function whose marked line is traced.
// Keep-alive clients load it for a fixed time in each scenario, alternating
// in rounds so that load from elsewhere on the machine falls on all alike:
//
//   - untraced: no tracepoint (the anchor);
//   - per backend (eBPF, Delve), default limits: a tracepoint with the
//     defaults (maxHitsPerSecond 50, full capture) on an agent with its
//     defaults (a stop budget of 10% for Delve);
//   - per backend, limits off: the same tracepoint with no rate limit, on an
//     agent with no stop budget;
//   - delve-int3, default limits: the Delve backend in its fallback mode
//     (Delve's int3 breakpoints, as where the kernel refuses uprobes), on an
//     agent with the defaults.
//
// It prints requests per second (median over rounds) and the ratio to
// untraced, with the hits published and dropped: the drops counted, the
// estimate the status adds to them, and the truth beside them (the line
// runs n times a request, so it ran the requests served times n; what was
// not published was dropped) with the ratio of what the status said to it
// (an estimate marked "+" is of the put-backs that had one: a line that goes
// quiet while its probe is out, as each round's does once its load stops,
// has none for that put-back). The agent is the real
// `riptrace agent` (bin/riptrace, `make build`) on an embedded NATS server.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	duration  = flag.Duration("duration", 5*time.Second, "load each scenario for `D` per round")
	rounds    = flag.Int("rounds", 7, "rounds of the scenarios")
	clients   = flag.Int("clients", 4, "concurrent keep-alive clients")
	loop      = flag.Int("n", 10, "iterations of the traced loop per request")
	bin       = flag.String("riptrace", "bin/riptrace", "the riptrace binary")
	backends  = flag.String("backends", "ebpf,delve,delve-int3", "comma-separated `BACKENDS` to measure (delve-int3: Delve's fallback mode, default limits only)")
	rates     = flag.String("rates", "", "comma-separated extra `RATES` (hits/s) to measure per backend beside the default limits: a low one tells the cost of re-arming each second from that of the captures")
	limitsOff = flag.Bool("limits-off", true, "measure each backend with no limits too")
)

const targetDir = "bench/targets/httphot"

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench-limits: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

type scenario struct {
	name    string
	backend string // "" untraced
	host    string // the agent: limited, unlimited or int3
	rate    int    // maxHitsPerSecond; 0: no limit
}

type result struct {
	rps           []float64
	cpu           []roundCPU
	hits, dropped uint64
	estimate      uint64 // dropped, with the estimate of the hits run while the probe was out
	lowerBound    bool   // dropped counts only the hits seen: the probe was out for a while
	noEstimate    bool   // a round's status said dropped is a lower bound with no estimate
	partial       bool   // a round's estimate left out put-backs that had none (Status.DroppedUnestimated)
	// trueDropped is what was truly dropped: the line's executions (the
	// requests served times n) less the hits published.
	trueDropped    uint64
	failedRequests int64
	removed        int // rounds in which the stop budget removed the tracepoint
}

// removedByBudget tells whether the agent removed the tracepoint because its
// traps alone cost more than the stop budget.
func removedByBudget(s fleet.StatusEvent) bool {
	return s.State == fleet.StateError && strings.Contains(s.Message, "stop budget")
}

func run() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp, err := os.MkdirTemp("", "riptrace-bench-limits")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	target := filepath.Join(tmp, "httphot")
	line, err := benchkit.BuildMarked(targetDir, target, "hot")
	if err != nil {
		return err
	}

	srv, c, stopFleet, err := benchkit.StartFleet(ctx, tmp, "bench-limits")
	if err != nil {
		return err
	}
	defer stopFleet()

	tgt := exec.Command(target)
	tgtOut, _ := tgt.StdoutPipe()
	tgt.Stderr = os.Stderr
	if err := tgt.Start(); err != nil {
		return err
	}
	defer stop(tgt)
	ready, err := bufio.NewReader(tgtOut).ReadString('\n')
	if err != nil {
		return fmt.Errorf("target: %v", err)
	}
	m := regexp.MustCompile(`READY pid=(\d+) addr=(\S+)`).FindStringSubmatch(ready)
	if m == nil {
		return fmt.Errorf("target said %q, want READY pid=… addr=…", ready)
	}
	pid, _ := strconv.Atoi(m[1])
	addr := m[2]
	go io.Copy(io.Discard, tgtOut)

	// Two agents on the one host: "limited" with the defaults (the stop
	// budget among them), "unlimited" with no stop budget. Each attaches
	// only while a tracepoint names it.
	agentLog, err := os.Create(filepath.Join(tmp, "agent.log"))
	if err != nil {
		return err
	}
	quiet := []int{os.Getpid()} // the bench (NATS is in it) and the agents
	agents := map[string]int{}
	for _, a := range [][]string{{"--host", "limited"}, {"--host", "unlimited", "--stop-budget", "0"}, {"--host", "int3"}} {
		ag := exec.Command(*bin, append([]string{"agent", "--nats", srv.ClientURL(), "--processes", "httphot"}, a...)...)
		if a[1] == "int3" {
			ag.Env = append(os.Environ(), "RIPTRACE_DELVE_MODE=int3")
		}
		ag.Stdout, ag.Stderr = agentLog, agentLog
		if err := ag.Start(); err != nil {
			return fmt.Errorf("starting the agent (run `make build` first): %v", err)
		}
		defer stop(ag)
		quiet = append(quiet, ag.Process.Pid)
		agents[a[1]] = ag.Process.Pid
	}

	scenarios := []scenario{{"untraced", "", "", 0}}
	for _, b := range strings.Split(*backends, ",") {
		if b == "delve-int3" {
			scenarios = append(scenarios, scenario{b + ", default limits", "delve", "int3", fleet.DefaultMaxHitsPerSecond})
			continue
		}
		scenarios = append(scenarios, scenario{b + ", default limits", b, "limited", fleet.DefaultMaxHitsPerSecond})
		for _, r := range strings.Split(*rates, ",") {
			if n, err := strconv.Atoi(r); err == nil && n > 0 {
				scenarios = append(scenarios, scenario{fmt.Sprintf("%s, %d hits/s", b, n), b, "limited", n})
			}
		}
		if *limitsOff {
			scenarios = append(scenarios, scenario{b + ", limits off", b, "unlimited", 0})
		}
	}
	results := make([]result, len(scenarios))
	fmt.Printf("target: GET /work?n=%d (the traced line runs %d times per request), %d clients, %v per scenario, %d rounds; load average %s\n",
		*loop, *loop, *clients, *duration, *rounds, benchkit.LoadAvg())
	for r := range *rounds {
		for i, sc := range scenarios {
			id := fmt.Sprintf("limits-%d-%d", r, i)
			if sc.backend != "" {
				spec := &fleet.Spec{
					ID:       id,
					Location: fleet.Location{Path: "main.go", Line: line},
					Selector: fleet.Selector{Hosts: []string{sc.host}, Pids: []int{pid}},
					Capture:  fleet.DefaultCapture,
					Limits:   fleet.Limits{MaxHitsPerSecond: sc.rate},
					Backend:  sc.backend,
				}
				if err := c.Declare(ctx, spec); err != nil {
					return err
				}
				if _, err := waitStatus(ctx, c, id, func(s fleet.StatusEvent) bool {
					return s.Pid == pid && (s.State == fleet.StateInstalled || s.State == fleet.StateThrottled || removedByBudget(s))
				}); err != nil {
					return fmt.Errorf("%s: %w (agent log: %s)", sc.name, err, agentLog.Name())
				}
			}
			// What the last scenario left (an agent still decoding and
			// publishing its backlog of hits) must not fall on this one.
			settle(quiet)
			before := measureCPU(pid, agents[sc.host], quiet[1:])
			rps, served, failed := load(addr)
			used := measureCPU(pid, agents[sc.host], quiet[1:]).since(before, rps)
			results[i].rps = append(results[i].rps, rps)
			results[i].cpu = append(results[i].cpu, used)
			loadRange.add(loadAverage1())
			results[i].failedRequests += failed
			note := ""
			if sc.backend != "" {
				// The agent refreshes counts with its heartbeat: take the
				// first report written after the load ended.
				// Counts that did not move since the last report are
				// not written again (a low rate's last hit may be long
				// decoded): after two heartbeats, the last report is it.
				ended := time.Now()
				var last fleet.StatusEvent
				st, err := waitStatusWithin(ctx, c, id, 12*time.Second, func(s fleet.StatusEvent) bool {
					if s.Pid == pid {
						last = s
					}
					return s.Pid == pid && (s.Updated.After(ended) || removedByBudget(s))
				})
				if err != nil {
					if last.Pid != pid {
						return err
					}
					st = last
				}
				results[i].hits += st.Hits
				// The line ran n times for each request served, and only
				// while the load ran (failed requests aside): what was
				// not published was dropped.
				truth := max(0, served*int64(*loop)-int64(st.Hits))
				results[i].trueDropped += uint64(truth)
				// A round's counted drops, its estimate, the truth, and
				// whether the stop budget throttled it: a round that
				// collapses says why here.
				note = fmt.Sprintf("  drops %d", st.Dropped)
				switch {
				case st.DroppedLowerBound && st.DroppedEstimate > 0 && st.DroppedUnestimated > 0:
					note += fmt.Sprintf(" ~%d+ (%d put-backs unestimated)", st.DroppedEstimate, st.DroppedUnestimated)
				case st.DroppedLowerBound && st.DroppedEstimate > 0:
					note += fmt.Sprintf(" ~%d", st.DroppedEstimate)
				case st.DroppedLowerBound:
					note += " (estimate unavailable)"
				}
				note += fmt.Sprintf(" true %d", truth)
				if strings.Contains(st.Message, "stop budget") {
					note += " (the stop budget dropped hits)"
				}
				results[i].dropped += st.Dropped
				results[i].estimate += max(st.DroppedEstimate, st.Dropped)
				results[i].lowerBound = results[i].lowerBound || st.DroppedLowerBound
				results[i].noEstimate = results[i].noEstimate || st.DroppedLowerBound && st.DroppedEstimate == 0
				results[i].partial = results[i].partial || st.DroppedUnestimated > 0
				if removedByBudget(st) {
					results[i].removed++
				}
				if err := c.Remove(ctx, id); err != nil {
					return err
				}
				if _, err := waitStatus(ctx, c, id, func(s fleet.StatusEvent) bool { return s.Pid == pid && s.Deleted }); err != nil {
					return fmt.Errorf("removing %s: %w", id, err)
				}
			}
			fmt.Printf("  round %d %-24s %9.0f requests/s  %s  load %s%s\n", r+1, sc.name, rps, used, loadAverage1(), note)
		}
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return fmt.Errorf("the target died: %v", err)
	}

	// Each round's ratio is against the untraced run of the same round:
	// load from elsewhere on the machine drifts between rounds.
	ratios := func(res result) (med, lo, hi float64) {
		var rs []float64
		for r, v := range res.rps {
			rs = append(rs, v/results[0].rps[r])
		}
		return benchkit.Median(rs), slices.Min(rs), slices.Max(rs)
	}
	fmt.Printf("\n%-22s %12s %10s %15s %14s %14s %12s %12s %s\n", "scenario", "requests/s", "vs untraced", "(range)", "hits published", "hits dropped", "(estimated)", "true drops", "estimate/true")
	var goals []string
	for i, sc := range scenarios {
		res := results[i]
		med := benchkit.Median(res.rps)
		ratio, lo, hi := ratios(res)
		hits, dropped, estimate, truth, vsTrue := "-", "-", "-", "-", "-"
		if sc.backend != "" {
			hits, dropped = strconv.FormatUint(res.hits, 10), strconv.FormatUint(res.dropped, 10)
			truth = strconv.FormatUint(res.trueDropped, 10)
		}
		if res.lowerBound {
			// The probe was out once the allowance was spent: the count
			// is of the hits seen, the rest estimated (where the
			// backend can).
			dropped = "≥" + dropped
			estimate = fmt.Sprintf("~%d", res.estimate)
			switch {
			case res.noEstimate:
				estimate = "unavailable"
			case res.partial:
				// Of the put-backs that had an estimate: the others'
				// hits are left out (a round's last, once its load
				// stopped while the probe was out, at least).
				estimate += "+"
			}
		}
		if sc.backend != "" && res.trueDropped > 0 {
			// What the status says against the truth: the estimate,
			// or the counted lower bound where there is none.
			said := res.dropped
			if res.lowerBound && !res.noEstimate {
				said = res.estimate
			}
			vsTrue = fmt.Sprintf("%.3f", float64(said)/float64(res.trueDropped))
		}
		fmt.Printf("%-22s %12.0f %10.3f× %15s %14s %14s %12s %12s %s\n", sc.name, med, ratio, fmt.Sprintf("%.2f–%.2f", lo, hi), hits, dropped, estimate, truth, vsTrue)
		if sc.backend != "" && strings.HasSuffix(sc.name, "default limits") {
			// Hits must still arrive at the allowed rate: at least half of
			// it over the rounds (a round's first second delivers a full
			// bucket, each later one a bucket's refill).
			want := float64(sc.rate) * duration.Seconds() * float64(*rounds) / 2
			met := ratio >= 0.95 && float64(res.hits) >= want
			goals = append(goals, fmt.Sprintf("goal %-8s %s: ≥0.95× untraced requests/s (median of the rounds' ratios) with %d hits/s arriving: %.3f×, %.0f hits/s (load average %s)",
				metWord(met), sc.name, sc.rate, ratio, float64(res.hits)/duration.Seconds()/float64(*rounds), benchkit.LoadAvg()))
		}
		if res.removed > 0 {
			fmt.Printf("  (the stop budget removed the tracepoint in %d of %d rounds: its traps alone kept the service stopped)\n", res.removed, *rounds)
		}
		if res.failedRequests > 0 {
			fmt.Printf("  (%d requests failed)\n", res.failedRequests)
		}
	}

	// Where the CPU went, per scenario: the service's own CPU per request
	// (traps and captures land there), the agent's CPU beside it, and all
	// of the bench's processes per request against untraced. The last is
	// what the requests/s would be on a machine that ran only the bench,
	// so it moves far less with load from elsewhere than requests/s do;
	// a stop (Delve's) that leaves a CPU idle is not in it.
	fmt.Printf("\n%-24s %20s %24s %22s %22s %14s\n", "scenario", "service µs/request", "agent ms/s (user+sys)", "all µs/request", "CPU ratio (range)", "counted drops/s")
	for i, sc := range scenarios {
		res := results[i]
		var svc, au, as, all, cr []float64
		for r, c := range res.cpu {
			svc = append(svc, float64(c.servicePerRequest)/1e3)
			au = append(au, float64(c.agentUser)/1e6)
			as = append(as, float64(c.agentSys)/1e6)
			all = append(all, float64(c.allPerRequest)/1e3)
			if c.allPerRequest > 0 {
				cr = append(cr, float64(results[0].cpu[r].allPerRequest)/float64(c.allPerRequest))
			}
		}
		crs := "-"
		if len(cr) > 0 {
			crs = fmt.Sprintf("%.3f× (%.2f–%.2f)", benchkit.Median(cr), slices.Min(cr), slices.Max(cr))
		}
		// With the probes taken out once the allowance is spent, the
		// drops counted are the traps between that and the probes
		// being out: each cost the service a trap for nothing.
		drops := "-"
		if sc.backend != "" {
			drops = fmt.Sprintf("%.0f", float64(res.dropped)/duration.Seconds()/float64(*rounds))
		}
		fmt.Printf("%-24s %20.1f %24s %22.1f %22s %14s\n", sc.name, benchkit.Median(svc), fmt.Sprintf("%.1f+%.1f", benchkit.Median(au), benchkit.Median(as)), benchkit.Median(all), crs, drops)
	}
	fmt.Printf("load average (1 min) over the rounds: %s\n", loadRange)

	fmt.Println()
	for _, g := range goals {
		fmt.Println(g)
	}
	return nil
}

// settle waits, up to 30 s, until the processes pids (and their waited-for
// children) use less than 2% of a CPU over a quarter of a second.
func settle(pids []int) {
	const step = 250 * time.Millisecond
	last := cpuTime(pids)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(step)
		now := cpuTime(pids)
		if now-last < step/50 {
			return
		}
		last = now
	}
}

// cpuTime is the CPU time pids and their children (the Delve backend's
// workers) used so far.
func cpuTime(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		for _, p := range append([]int{pid}, children(pid)...) {
			u, k := procCPU(p)
			sum += u + k
		}
	}
	return sum
}

// loadSpan is the lowest and highest 1-minute load average seen.
type loadSpan struct{ lo, hi float64 }

var loadRange = loadSpan{lo: -1}

func (l *loadSpan) add(s string) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return
	}
	if l.lo < 0 || v < l.lo {
		l.lo = v
	}
	l.hi = max(l.hi, v)
}

func (l loadSpan) String() string { return fmt.Sprintf("%.1f–%.1f", l.lo, l.hi) }

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// load runs the clients against addr for the scenario's duration and
// returns the completed requests per second, the completed requests and
// the failed requests.
func load(addr string) (rps float64, served, failed int64) {
	var done, fails atomic.Int64
	deadline := time.Now().Add(*duration)
	tr := &http.Transport{MaxIdleConnsPerHost: *clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := fmt.Sprintf("http://%s/work?n=%d", addr, *loop)
	start := time.Now()
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := hc.Get(url)
				if err != nil {
					fails.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fails.Add(1)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), done.Load(), fails.Load()
}

// waitStatus returns the first status event of tracepoint id that ok
// accepts, within a minute.
func waitStatus(ctx context.Context, c *fleet.Client, id string, ok func(fleet.StatusEvent) bool) (fleet.StatusEvent, error) {
	return waitStatusWithin(ctx, c, id, time.Minute, ok)
}

// waitStatusWithin returns the first status event of tracepoint id that ok
// accepts, within d.
func waitStatusWithin(ctx context.Context, c *fleet.Client, id string, d time.Duration, ok func(fleet.StatusEvent) bool) (fleet.StatusEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ch, err := c.WatchStatus(ctx, id)
	if err != nil {
		return fleet.StatusEvent{}, err
	}
	var last fleet.StatusEvent
	for ev := range ch {
		if ok(ev) {
			return ev, nil
		}
		last = ev
	}
	return last, fmt.Errorf("tracepoint %s: no such status within %v; last: %s %s", id, d, last.State, last.Message)
}

// stop ends cmd with SIGTERM (an agent detaches first), then SIGKILL.
func stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// cpuSample is the CPU time the bench's processes had used at an instant.
type cpuSample struct {
	at                  time.Time
	service             time.Duration // the target
	agentUser, agentSys time.Duration // the scenario's agent and its workers
	all                 time.Duration // the target, the bench (its clients and NATS) and every agent
}

// roundCPU is where the CPU went during one scenario's load.
type roundCPU struct {
	servicePerRequest   time.Duration // the target's CPU per request served
	agentUser, agentSys time.Duration // the scenario's agent's CPU per second of load
	allPerRequest       time.Duration // the CPU of all the bench's processes per request
}

func (c roundCPU) String() string {
	return fmt.Sprintf("service %5.1f µs/request, agent %5.1f+%4.1f ms/s (user+sys), all %5.1f µs/request",
		float64(c.servicePerRequest)/1e3, float64(c.agentUser)/1e6, float64(c.agentSys)/1e6, float64(c.allPerRequest)/1e3)
}

// measureCPU samples the CPU time of the target, of agent (0: none) with
// its workers, and of everything the bench started (agents) and itself.
func measureCPU(target, agent int, agents []int) cpuSample {
	s := cpuSample{at: time.Now()}
	u, k := procCPU(target)
	s.service = u + k
	s.all = s.service
	u, k = procCPU(os.Getpid()) // the clients and NATS; the agents are below
	s.all += u + k
	for _, a := range agents {
		for _, p := range append([]int{a}, children(a)...) {
			u, k := procCPU(p)
			s.all += u + k
			if a == agent {
				s.agentUser += u
				s.agentSys += k
			}
		}
	}
	return s
}

// since is the CPU used from before to s, over the requests served at rps.
func (s cpuSample) since(before cpuSample, rps float64) roundCPU {
	wall := s.at.Sub(before.at)
	reqs := rps * wall.Seconds()
	if reqs < 1 {
		reqs = 1
	}
	perSecond := func(d time.Duration) time.Duration { return time.Duration(float64(d) / wall.Seconds()) }
	return roundCPU{
		servicePerRequest: time.Duration(float64(s.service-before.service) / reqs),
		agentUser:         perSecond(s.agentUser - before.agentUser),
		agentSys:          perSecond(s.agentSys - before.agentSys),
		allPerRequest:     time.Duration(float64(s.all-before.all) / reqs),
	}
}

// procCPU is the user and system CPU time pid used so far, with its
// waited-for children, as /proc/PID/stat says.
func procCPU(pid int) (user, sys time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	field := func(i int) time.Duration {
		if i >= len(f) {
			return 0
		}
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	// utime, stime, cutime, cstime: fields 14-17, here 11-14.
	return field(11) + field(13), field(12) + field(14)
}

// children lists pid's live children (the Delve backend's workers).
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// loadAverage1 is the machine's 1-minute load average.
func loadAverage1() string {
	l, _, _ := strings.Cut(benchkit.LoadAvg(), " ")
	return l
}
