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
// untraced, with the hits published and dropped. The agent is the real
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
	duration = flag.Duration("duration", 5*time.Second, "load each scenario for `D` per round")
	rounds   = flag.Int("rounds", 3, "rounds of the scenarios")
	clients  = flag.Int("clients", 4, "concurrent keep-alive clients")
	loop     = flag.Int("n", 10, "iterations of the traced loop per request")
	bin      = flag.String("riptrace", "bin/riptrace", "the riptrace binary")
	backends = flag.String("backends", "ebpf,delve,delve-int3", "comma-separated `BACKENDS` to measure (delve-int3: Delve's fallback mode, default limits only)")
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
	rps            []float64
	hits, dropped  uint64
	estimate       uint64 // dropped, with the estimate of the hits run while the probe was out
	lowerBound     bool   // dropped counts only the hits seen: the probe was out for a while
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
	if err := benchkit.Build(targetDir, target); err != nil {
		return err
	}
	line, err := benchkit.MarkerLine(filepath.Join(targetDir, "main.go"), "hot")
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
	}

	scenarios := []scenario{{"untraced", "", "", 0}}
	for _, b := range strings.Split(*backends, ",") {
		if b == "delve-int3" {
			scenarios = append(scenarios, scenario{b + ", default limits", "delve", "int3", fleet.DefaultMaxHitsPerSecond})
			continue
		}
		scenarios = append(scenarios,
			scenario{b + ", default limits", b, "limited", fleet.DefaultMaxHitsPerSecond},
			scenario{b + ", limits off", b, "unlimited", 0})
	}
	results := make([]result, len(scenarios))
	fmt.Printf("target: GET /work?n=%d (the traced line runs %d times per request), %d clients, %v per scenario, %d rounds; load average %s\n",
		*loop, *loop, *clients, *duration, *rounds, loadAverage())
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
			rps, failed := load(addr)
			results[i].rps = append(results[i].rps, rps)
			results[i].failedRequests += failed
			if sc.backend != "" {
				// The agent refreshes counts with its heartbeat: take the
				// first report written after the load ended.
				ended := time.Now()
				st, err := waitStatus(ctx, c, id, func(s fleet.StatusEvent) bool {
					return s.Pid == pid && (s.Updated.After(ended) || removedByBudget(s))
				})
				if err != nil {
					return err
				}
				results[i].hits += st.Hits
				results[i].dropped += st.Dropped
				results[i].estimate += max(st.DroppedEstimate, st.Dropped)
				results[i].lowerBound = results[i].lowerBound || st.DroppedLowerBound
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
			fmt.Printf("  round %d %-22s %9.0f requests/s\n", r+1, sc.name, rps)
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
		return median(rs), slices.Min(rs), slices.Max(rs)
	}
	fmt.Printf("\n%-22s %12s %10s %15s %14s %14s %s\n", "scenario", "requests/s", "vs untraced", "(range)", "hits published", "hits dropped", "(estimated)")
	var goals []string
	for i, sc := range scenarios {
		res := results[i]
		med := median(res.rps)
		ratio, lo, hi := ratios(res)
		hits, dropped, estimate := "-", "-", ""
		if sc.backend != "" {
			hits, dropped = strconv.FormatUint(res.hits, 10), strconv.FormatUint(res.dropped, 10)
		}
		if res.lowerBound {
			// The probe was out once the allowance was spent: the count
			// is of the hits seen, the rest estimated.
			dropped = "≥" + dropped
			estimate = fmt.Sprintf("~%d", res.estimate)
		}
		fmt.Printf("%-22s %12.0f %10.3f× %15s %14s %14s %s\n", sc.name, med, ratio, fmt.Sprintf("%.2f–%.2f", lo, hi), hits, dropped, estimate)
		if sc.backend != "" && sc.rate > 0 {
			// Hits must still arrive at the allowed rate: at least half of
			// it over the rounds (a round's first second delivers a full
			// bucket, each later one a bucket's refill).
			want := float64(sc.rate) * duration.Seconds() * float64(*rounds) / 2
			met := ratio >= 0.95 && float64(res.hits) >= want
			goals = append(goals, fmt.Sprintf("goal %-8s %s: ≥0.95× untraced requests/s (median of the rounds' ratios) with %d hits/s arriving: %.3f×, %.0f hits/s (load average %s)",
				metWord(met), sc.name, sc.rate, ratio, float64(res.hits)/duration.Seconds()/float64(*rounds), loadAverage()))
		}
		if res.removed > 0 {
			fmt.Printf("  (the stop budget removed the tracepoint in %d of %d rounds: its traps alone kept the service stopped)\n", res.removed, *rounds)
		}
		if res.failedRequests > 0 {
			fmt.Printf("  (%d requests failed)\n", res.failedRequests)
		}
	}
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
// workers) used so far, as /proc/PID/stat says.
func cpuTime(pids []int) time.Duration {
	var ticks int64
	all := slices.Clone(pids)
	for _, pid := range pids {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					all = append(all, n)
				}
			}
		}
	}
	for _, pid := range all {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// utime, stime, cutime, cstime: fields 14-17, here 11-14.
		for _, i := range []int{11, 12, 13, 14} {
			if i < len(f) {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				ticks += n
			}
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// loadAverage is the machine's 1-, 5- and 15-minute load average: the
// ratios are worth what the load let them be.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// load runs the clients against addr for the scenario's duration and
// returns the completed requests per second and the failed requests.
func load(addr string) (float64, int64) {
	var done, failed atomic.Int64
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
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), failed.Load()
}

// waitStatus returns the first status event of tracepoint id that ok
// accepts, within a minute.
func waitStatus(ctx context.Context, c *fleet.Client, id string, ok func(fleet.StatusEvent) bool) (fleet.StatusEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
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
	return last, fmt.Errorf("tracepoint %s: no such status within a minute; last: %s %s", id, last.State, last.Message)
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
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
