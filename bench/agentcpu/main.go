// Command agentcpu is what `make bench-agent` runs: the eBPF agent's CPU
// time per hit it decodes and publishes, alone, on make bench's hot loop
// (bench/targets/hot), with the minor page faults it takes per hit; with
// -vs, two riptrace binaries alternated run by run, and the ratio of their
// medians, so that a change to the hit path is measured against the code
// before it on the same machine at the same time.
//
// Each run starts the target (built under a name of its own, so that no
// other program on the host is selected), a real `riptrace agent
// --backend ebpf` and a tracepoint on the loop's marked line with no rate
// limit, on a `riptrace server` at nice 19 (the stream's side stands for
// another machine, as in make bench). After -warm bursts of -burst hits,
// which the agent's heap grows through, it reads the agent's CPU time
// (the sum of its threads' run time in /proc/PID/task/*/schedstat, in ns:
// USER_HZ ticks are too coarse for a 30k-hit run; a thread that exits
// meanwhile takes its time with it, and Go's rarely do) and its minor
// faults, has the loop run -runs bursts, waits until the stream holds
// every hit (or the tracepoint's status counts the rest dropped), and
// reads them again. The agent's idle work while it waits is in the figure, as it is
// in make bench's.
//
// Then, in the same run, what the agent costs a second beside a line run
// now and then: one hit every -trickle for -trickle-for (the agent counts
// as active, and publishes a watermark every 50 ms, until 2 s after a hit),
// and once it is idle again (-idle, from 3 s after the last hit): a
// service's tracepoint at default limits keeps its agent in the first
// state.
//
// Only processes started here are read or signalled, by pid.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/riptrace/riptrace/bench/internal/benchkit"
	"github.com/riptrace/riptrace/fleet"
)

var (
	rounds = flag.Int("rounds", 4, "measured runs of each binary")
	runs   = flag.Int("runs", 10, "bursts measured in each run")
	warm   = flag.Int("warm", 10, "bursts before measuring, in each run")
	burst  = flag.Int("burst", 3000, "hits in a burst")
	bin    = flag.String("riptrace", "bin/riptrace", "the riptrace binary measured")
	vs     = flag.String("vs", "", "another riptrace `binary`, alternated with -riptrace run by run")

	trickle    = flag.Duration("trickle", 500*time.Millisecond, "the time between hits while the agent's CPU a second beside a line run now and then is read")
	trickleFor = flag.Duration("trickle-for", 8*time.Second, "how long that is read (0: not at all)")
	idle       = flag.Duration("idle", 5*time.Second, "how long the idle agent's CPU a second is read")
)

const targetDir = "bench/targets/hot"

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench-agent: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// result is one run's figures.
type result struct {
	cpuPerHit    time.Duration
	faultsPerHit float64
	hits         uint64
	// trickle and idle are the agent's CPU a second with a hit every
	// -trickle, and with none.
	trickle, idle time.Duration
}

func run() (err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp, err := os.MkdirTemp("", "riptrace-bench-agent")
	if err != nil {
		return err
	}
	defer func() {
		// A failure names the agent's log in it: kept for reading.
		if err == nil {
			os.RemoveAll(tmp)
		}
	}()
	target := filepath.Join(tmp, "rtcpu-hot")
	line, err := benchkit.BuildMarked(targetDir, target, "hot")
	if err != nil {
		return err
	}
	url, stopServer, err := startServer(*bin, tmp)
	if err != nil {
		return err
	}
	defer stopServer()
	c, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: "bench-agent"})
	if err != nil {
		return err
	}
	defer c.Close()

	bins := []string{*bin}
	if *vs != "" {
		bins = append(bins, *vs)
	}
	fmt.Printf("the eBPF agent decoding and publishing %d bursts of %d hits (after %d), %d runs of each binary; load average at start: %s\n",
		*runs, *burst, *warm, *rounds, benchkit.LoadAvg())
	results := make([][]result, len(bins))
	for r := range *rounds {
		for i, b := range bins {
			res, err := measure(ctx, c, url, tmp, target, line, b, r*len(bins)+i)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", b, r+1, err)
			}
			results[i] = append(results[i], res)
			fmt.Printf("  run %d  %-28s %6.1f µs/hit  %5.3f faults/hit  %d hits%s\n", r+1, b, us(res.cpuPerHit), res.faultsPerHit, res.hits, res.perSecond())
		}
	}
	medians := make([]float64, len(bins))
	trickles := make([]float64, len(bins))
	for i, b := range bins {
		var cpu, faults, tr, id []float64
		for _, res := range results[i] {
			cpu = append(cpu, us(res.cpuPerHit))
			faults = append(faults, res.faultsPerHit)
			tr = append(tr, ms(res.trickle))
			id = append(id, ms(res.idle))
		}
		medians[i], trickles[i] = benchkit.Median(cpu), benchkit.Median(tr)
		fmt.Printf("%-28s median %6.1f µs/hit (range %.1f–%.1f), %.3f faults/hit", b, medians[i], slices.Min(cpu), slices.Max(cpu), benchkit.Median(faults))
		if *trickleFor > 0 {
			fmt.Printf("; a hit every %v: %.1f ms/s (range %.1f–%.1f), idle %.1f ms/s", *trickle, trickles[i], slices.Min(tr), slices.Max(tr), benchkit.Median(id))
		}
		fmt.Println()
	}
	if len(bins) == 2 {
		fmt.Printf("%s against %s: %.2fx per hit", bins[0], bins[1], medians[0]/medians[1])
		if *trickleFor > 0 {
			fmt.Printf(", %.2fx a second with a hit every %v", trickles[0]/trickles[1], *trickle)
		}
		fmt.Println()
	}
	fmt.Printf("load average at end: %s\n", benchkit.LoadAvg())
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// perSecond is the run's CPU a second beside a line run now and then, and
// idle, if read.
func (r result) perSecond() string {
	if *trickleFor <= 0 {
		return ""
	}
	return fmt.Sprintf("  a hit every %v: %5.1f ms/s, idle %4.1f ms/s", *trickle, ms(r.trickle), ms(r.idle))
}

// startServer starts `riptrace server` at nice 19 with its data in dir and
// returns its NATS URL.
func startServer(rt, dir string) (string, func(), error) {
	cmd := exec.Command("nice", "-n", "19", rt, "server", "--listen", "127.0.0.1:-1", "--data", filepath.Join(dir, "server"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting the server (run `make build` first): %v", err)
	}
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	rd := bufio.NewReader(out)
	ready := regexp.MustCompile(`^riptrace server ready: (nats://\S+)`)
	for {
		l, err := rd.ReadString('\n')
		if err != nil {
			stop()
			return "", nil, fmt.Errorf("the server stopped before it was ready: %v", err)
		}
		if m := ready.FindStringSubmatch(l); m != nil {
			go io.Copy(io.Discard, rd)
			return m[1], stop, nil
		}
	}
}

// hotTarget is a running copy of the hot loop.
type hotTarget struct {
	cmd *exec.Cmd
	pid int
	in  io.Writer
	out *bufio.Reader
}

func startTarget(path string) (*hotTarget, error) {
	cmd := exec.Command(path)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &hotTarget{cmd: cmd, in: in, out: bufio.NewReader(out)}
	l, err := t.out.ReadString('\n')
	m := regexp.MustCompile(`READY pid=(\d+)`).FindStringSubmatch(l)
	if err != nil || m == nil {
		t.stop()
		return nil, fmt.Errorf("the target said %q (%v), want READY pid=…", l, err)
	}
	t.pid, _ = strconv.Atoi(m[1])
	return t, nil
}

// loop has the target run n hits of the traced line, and waits until it
// has.
func (t *hotTarget) loop(n int) error {
	if _, err := fmt.Fprintf(t.in, "run %d\n", n); err != nil {
		return err
	}
	l, err := t.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "elapsed ") {
		return fmt.Errorf("the target said %q (%v), want elapsed …", l, err)
	}
	return nil
}

func (t *hotTarget) stop() { t.cmd.Process.Kill(); t.cmd.Wait() }

func measure(ctx context.Context, c *fleet.Client, url, tmp, target string, line int, rt string, run int) (result, error) {
	var res result
	t, err := startTarget(target)
	if err != nil {
		return res, err
	}
	defer t.stop()
	host := fmt.Sprintf("agentcpu-%d-%d", os.Getpid(), run)
	logf, err := os.Create(filepath.Join(tmp, host+".log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	ag := exec.Command(rt, "agent", "--nats", url, "--host", host, "--processes", filepath.Base(target), "--backend", "ebpf", "--stop-budget", "0")
	ag.Stdout, ag.Stderr = logf, logf
	if err := ag.Start(); err != nil {
		return res, fmt.Errorf("starting the agent: %v", err)
	}
	agentDone := make(chan struct{})
	go func() { ag.Wait(); close(agentDone) }()
	defer func() {
		ag.Process.Signal(syscall.SIGTERM)
		select {
		case <-agentDone:
		case <-time.After(time.Minute):
			ag.Process.Kill()
			<-agentDone
		}
	}()

	id := fmt.Sprintf("agentcpu-%d-%d", os.Getpid(), run)
	spec := &fleet.Spec{
		ID:       id,
		Location: fleet.Location{Path: "main.go", Line: line},
		Selector: fleet.Selector{Hosts: []string{host}, Pids: []int{t.pid}},
		Capture:  fleet.DefaultCapture,
		Backend:  "ebpf",
	}
	if err := c.Declare(ctx, spec); err != nil {
		return res, err
	}
	defer c.Remove(context.Background(), id)
	dropped, err := watchInstalled(ctx, c, id, t.pid, logf.Name())
	if err != nil {
		return res, err
	}

	var sent uint64
	bursts := func(n int) error {
		for range n {
			if err := t.loop(*burst); err != nil {
				return err
			}
			sent += uint64(*burst)
		}
		return awaitHits(ctx, c, id, host, sent, dropped)
	}
	if err := bursts(*warm); err != nil {
		return res, err
	}
	stored0, _ := storedHits(ctx, c, id, host)
	cpu0, faults0, err := agentUsage(ag.Process.Pid)
	if err != nil {
		return res, err
	}
	if err := bursts(*runs); err != nil {
		return res, err
	}
	cpu1, faults1, err := agentUsage(ag.Process.Pid)
	if err != nil {
		return res, err
	}
	stored1, _ := storedHits(ctx, c, id, host)
	if err := syscall.Kill(t.pid, 0); err != nil {
		return res, fmt.Errorf("the traced process died: %v", err)
	}
	res.hits = stored1 - stored0
	if res.hits == 0 {
		return res, fmt.Errorf("no hit stored in the measured runs (agent log: %s)", logf.Name())
	}
	res.cpuPerHit = (cpu1 - cpu0) / time.Duration(res.hits)
	res.faultsPerHit = float64(faults1-faults0) / float64(res.hits)
	if *trickleFor > 0 {
		if res.trickle, err = cpuPerSecond(ag.Process.Pid, *trickleFor, func() error { return t.loop(1) }); err != nil {
			return res, err
		}
		// The agent stays active 2 s after its last hit.
		time.Sleep(3 * time.Second)
		if res.idle, err = cpuPerSecond(ag.Process.Pid, *idle, nil); err != nil {
			return res, err
		}
	}
	return res, nil
}

// cpuPerSecond returns pid's CPU a second over d, while hit, if not nil,
// runs the traced line once every -trickle.
func cpuPerSecond(pid int, d time.Duration, hit func() error) (time.Duration, error) {
	cpu0, _, err := agentUsage(pid)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if hit == nil {
		time.Sleep(d)
	}
	for hit != nil && time.Since(start) < d {
		if err := hit(); err != nil {
			return 0, err
		}
		time.Sleep(*trickle)
	}
	took := time.Since(start)
	cpu1, _, err := agentUsage(pid)
	if err != nil {
		return 0, err
	}
	return time.Duration(float64(cpu1-cpu0) / took.Seconds()), nil
}

// watchInstalled waits until tracepoint id is installed in pid, and from
// then on keeps in the returned counter the hits its status says were
// dropped (a full ring buffer drops hits of a burst the agent cannot keep
// up with).
func watchInstalled(ctx context.Context, c *fleet.Client, id string, pid int, agentLog string) (*atomic.Uint64, error) {
	ch, err := c.WatchStatus(ctx, id)
	if err != nil {
		return nil, err
	}
	timeout := time.After(3 * time.Minute)
	var last fleet.StatusEvent
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return nil, errors.New("the status watch ended")
			}
			last = ev
			if ev.Pid == pid && (ev.State == fleet.StateInstalled || ev.State == fleet.StateThrottled) {
				var dropped atomic.Uint64
				dropped.Store(ev.Dropped)
				go func() {
					for ev := range ch {
						if ev.Pid == pid {
							dropped.Store(ev.Dropped)
						}
					}
				}()
				return &dropped, nil
			}
		case <-timeout:
			return nil, fmt.Errorf("tracepoint %s not installed in pid %d within 3 minutes; last status: %s %s (agent log: %s)", id, pid, last.State, last.Message, agentLog)
		}
	}
}

// awaitHits waits until the stream holds want hits of host's tracepoint
// id, less those its status counts dropped.
func awaitHits(ctx context.Context, c *fleet.Client, id, host string, want uint64, dropped *atomic.Uint64) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, err := storedHits(ctx, c, id, host)
		if err != nil {
			return err
		}
		if n+dropped.Load() >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the stream holds %d of %d hits after 3 minutes, %d counted dropped", n, want, dropped.Load())
		}
		time.Sleep(20 * time.Millisecond) // polling the stream's count
	}
}

func storedHits(ctx context.Context, c *fleet.Client, id, host string) (uint64, error) {
	counts, err := c.StoredHits(ctx, id)
	return counts[host], err
}

// agentUsage returns the run time of pid's threads (schedstat, ns) and its
// minor faults.
func agentUsage(pid int) (time.Duration, uint64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, 0, fmt.Errorf("reading the agent's threads: %v", err)
	}
	var ns int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread gone meanwhile
		}
		if v, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64); err == nil {
			ns += v
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	minflt, _ := strconv.ParseUint(f[7], 10, 64)
	return time.Duration(ns), minflt, nil
}
