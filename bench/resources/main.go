// Command resources is what `make bench-resources` runs: it measures what an
// agent costs per traced process when many processes of one program are
// traced at once, against one process as the anchor.
//
// For each backend and each process count N (1, the anchor, then -n), it
// starts N copies of agent/testdata/targets/paced (built optimized, under a
// name of its own so that no other program on the host is selected), each
// calling its traced line -rate/N times a second, so that the agent sees
// the same -rate hits a second in total whatever N. It starts the real
// `riptrace agent` (bin/riptrace, `make build`) on an embedded NATS server,
// declares one tracepoint on the paced line naming those pids, and once it
// is installed in all of them measures for -window:
//
//   - RSS: VmRSS of the agent and every process under it (the Delve
//     backend's workers), read from /proc/PID/status at the window's end;
//   - CPU: user+system time of the same processes over the window, in
//     percent of one CPU;
//   - stop: from SIGTERM to the agent's exit (it detaches everything first).
//
// Only processes started here are read or signalled, by pid.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/riptrace/riptrace/bench/internal/benchkit"
	"github.com/riptrace/riptrace/fleet"
)

var (
	procs    = flag.Int("n", 50, "traced processes in the measured run")
	rate     = flag.Int("rate", 500, "hits per second of the traced line, in total over the processes")
	window   = flag.Duration("window", 10*time.Second, "measure CPU over `D`")
	bin      = flag.String("riptrace", "bin/riptrace", "the riptrace binary")
	backends = flag.String("backends", "ebpf,delve", "comma-separated `BACKENDS` to measure")
)

const targetDir = "agent/testdata/targets/paced"

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench-resources: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

type result struct {
	rssKB  int64
	anonKB int64 // of rssKB, anonymous memory (the Go heap among it)
	procs  int   // agent plus processes under it
	cpu    float64
	stop   time.Duration
}

func run() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp, err := os.MkdirTemp("", "riptrace-bench-resources")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	target := filepath.Join(tmp, "rtres-paced")
	line, err := benchkit.BuildMarked(targetDir, target, "tick")
	if err != nil {
		return err
	}
	srv, c, stopFleet, err := benchkit.StartFleet(ctx, tmp, "bench-resources")
	if err != nil {
		return err
	}
	defer stopFleet()

	fmt.Printf("%d hits/s in total on one line; CPU over %v; load average at start: %s\n", *rate, *window, benchkit.LoadAvg())
	fmt.Printf("%-7s %5s %8s %8s %9s %10s %8s %9s\n", "backend", "procs", "RSS MB", "anon MB", "per proc", "agent+sub", "CPU %", "stop s")
	for _, b := range strings.Split(*backends, ",") {
		var anchor result
		for i, n := range []int{1, *procs} {
			r, err := measure(ctx, c, srv.ClientURL(), tmp, target, line, b, n, i)
			if err != nil {
				return fmt.Errorf("%s, %d processes: %w", b, n, err)
			}
			if i == 0 {
				anchor = r
			}
			fmt.Printf("%-7s %5d %8.1f %8.1f %9.1f %10d %8.1f %9.2f\n", b, n, float64(r.rssKB)/1024, float64(r.anonKB)/1024,
				float64(r.rssKB)/1024/float64(n), r.procs, r.cpu, r.stop.Seconds())
			if i > 0 {
				fmt.Printf("        vs 1 process: RSS %.2f×, CPU %.2f×, stop %.2f×\n",
					float64(r.rssKB)/float64(anchor.rssKB), r.cpu/anchor.cpu, r.stop.Seconds()/anchor.stop.Seconds())
			}
		}
	}
	fmt.Printf("load average at end: %s\n", benchkit.LoadAvg())
	return nil
}

func measure(ctx context.Context, c *fleet.Client, url, tmp, target string, line int, backend string, n, run int) (result, error) {
	var res result
	var pids []int
	var cmds []*exec.Cmd
	defer func() {
		for _, cmd := range cmds {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	per := max(*rate/n, 1)
	for range n {
		cmd := exec.Command(target, "-rate", strconv.Itoa(per))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return res, err
		}
		cmds = append(cmds, cmd)
		rd := bufio.NewReader(out)
		ready, err := rd.ReadString('\n')
		if err != nil {
			return res, fmt.Errorf("target: %v", err)
		}
		m := regexp.MustCompile(`READY pid=(\d+)`).FindStringSubmatch(ready)
		if m == nil {
			return res, fmt.Errorf("target said %q, want READY pid=…", ready)
		}
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
		go func() { // keep its stdout flowing
			for {
				if _, err := rd.ReadString('\n'); err != nil {
					return
				}
			}
		}()
	}

	host := fmt.Sprintf("resbench-%d-%d", os.Getpid(), run)
	logf, err := os.Create(filepath.Join(tmp, host+"-"+backend+".log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	ag := exec.Command(*bin, "agent", "--nats", url, "--host", host, "--processes", filepath.Base(target), "--stop-budget", "0")
	ag.Stdout, ag.Stderr = logf, logf
	if err := ag.Start(); err != nil {
		return res, fmt.Errorf("starting the agent (run `make build` first): %v", err)
	}
	agentDone := make(chan struct{})
	go func() { ag.Wait(); close(agentDone) }()
	defer func() {
		select {
		case <-agentDone:
		default:
			ag.Process.Kill()
			<-agentDone
		}
	}()

	id := fmt.Sprintf("resources-%s-%d", backend, run)
	spec := &fleet.Spec{
		ID:       id,
		Location: fleet.Location{Path: "main.go", Line: line},
		Selector: fleet.Selector{Hosts: []string{host}, Pids: pids},
		Capture:  fleet.DefaultCapture,
		Backend:  backend,
	}
	if err := c.Declare(ctx, spec); err != nil {
		return res, err
	}
	defer c.Remove(context.Background(), id)
	if err := awaitInstalled(ctx, c, id, pids, logf.Name()); err != nil {
		return res, err
	}

	start, _ := cpuTicks(ag.Process.Pid)
	t0 := time.Now()
	time.Sleep(*window) // the measure itself, not a wait for a condition
	end, _ := cpuTicks(ag.Process.Pid)
	res.cpu = float64(end-start) / ticksPerSecond / time.Since(t0).Seconds() * 100
	res.rssKB, res.anonKB, res.procs = rss(ag.Process.Pid)

	stopAt := time.Now()
	ag.Process.Signal(syscall.SIGTERM)
	select {
	case <-agentDone:
		res.stop = time.Since(stopAt)
	case <-time.After(2 * time.Minute):
		return res, fmt.Errorf("the agent did not stop within 2 minutes of SIGTERM")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			return res, fmt.Errorf("traced pid %d died: %v", pid, err)
		}
	}
	return res, nil
}

// awaitInstalled waits until tracepoint id is installed in every pid.
func awaitInstalled(ctx context.Context, c *fleet.Client, id string, pids []int, agentLog string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	ch, err := c.WatchStatus(ctx, id)
	if err != nil {
		return err
	}
	want := make(map[int]bool)
	for _, p := range pids {
		want[p] = true
	}
	var last fleet.StatusEvent
	for ev := range ch {
		last = ev
		if ev.State == fleet.StateInstalled || ev.State == fleet.StateThrottled {
			delete(want, ev.Pid)
		}
		if len(want) == 0 {
			return nil
		}
	}
	return fmt.Errorf("tracepoint %s installed in %d of %d processes within 3 minutes; last status: %s %s (agent log: %s)",
		id, len(pids)-len(want), len(pids), last.State, last.Message, agentLog)
}

// ticksPerSecond is USER_HZ, 100 on Linux.
const ticksPerSecond = 100

// tree returns pid and every process under it, read from /proc.
func tree(root int) []int {
	parent := make(map[int][]int)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			parent[ppid] = append(parent[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, parent[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/PID/stat after the command name:
// state is [0], ppid [1], utime [11], stime [12].
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// cpuTicks sums user and system time of root and the processes under it.
func cpuTicks(root int) (int64, int) {
	var sum int64
	pids := tree(root)
	for _, pid := range pids {
		if f := statFields(pid); len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			sum += u + s
		}
	}
	return sum, len(pids)
}

// rss sums VmRSS and RssAnon (kB) of root and the processes under it.
func rss(root int) (int64, int64, int) {
	var sum, anon int64
	pids := tree(root)
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				switch f[0] {
				case "VmRSS:":
					sum += kb
				case "RssAnon:":
					anon += kb
				}
			}
		}
	}
	return sum, anon, len(pids)
}
