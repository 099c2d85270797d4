// Command perhit measures what a hit of the eBPF backend costs a hot loop
// against a bare uprobe, with the BPF programs' own run time from the
// kernel's statistics, in one process: the parts of make bench's hot-loop
// rows, run many times alternating, with knobs to tell where the rest goes.
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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	cebpf "github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/bench/internal/benchkit"
	"github.com/riptrace/riptrace/fleet"
)

var (
	runs = flag.Int("runs", 9, "measured runs per tool")
	n    = flag.Int("n", 3000, "hits per run")
	nice = flag.Int("nice", 19, "also measure each run with the decoder's thread at this nice, alternating with the default 19")
)

type hot struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufio.Reader
	pid int
}

func startHot(bin string) *hot {
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // gone with this process, however it ends
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	h := &hot{cmd: cmd, in: in.(*os.File), out: bufio.NewReader(out)}
	line, _ := h.out.ReadString('\n')
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(line)
	h.pid, _ = strconv.Atoi(m[1])
	return h
}

func (h *hot) run(n int) time.Duration {
	fmt.Fprintf(h.in, "run %d\n", n)
	line, _ := h.out.ReadString('\n')
	ns, _ := strconv.ParseInt(strings.TrimSpace(line[strings.Index(line, "ns=")+3:]), 10, 64)
	return time.Duration(ns)
}

// progStats sums the run time and count of this process's BPF programs
// named name (others' agents on the machine load theirs).
func progStats(name string) (time.Duration, uint64) {
	var total time.Duration
	var count uint64
	fds, _ := filepath.Glob("/proc/self/fdinfo/*")
	seen := map[string]bool{}
	for _, f := range fds {
		b, _ := os.ReadFile(f)
		m := regexp.MustCompile(`prog_id:\s+(\d+)`).FindSubmatch(b)
		if m == nil || seen[string(m[1])] {
			continue
		}
		seen[string(m[1])] = true
		id, _ := strconv.Atoi(string(m[1]))
		p, err := cebpf.NewProgramFromID(cebpf.ProgramID(id))
		if err != nil {
			continue
		}
		info, err := p.Info()
		st, err2 := p.Stats()
		p.Close()
		if err != nil || err2 != nil || info.Name != name {
			continue
		}
		total += st.Runtime
		count += st.RunCount
	}
	return total, count
}

func main() {
	flag.Parse()
	tmp, _ := os.MkdirTemp("", "perhit")
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "hot")
	line, err := benchkit.BuildMarked("bench/targets/hot", bin, "hot")
	if err != nil {
		log.Fatal(err)
	}
	base, bare, rte := startHot(bin), startHot(bin), startHot(bin)
	defer func() {
		for _, h := range []*hot{base, bare, rte} {
			h.cmd.Process.Kill()
		}
	}()
	stats, err := cebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		log.Fatal(err)
	}
	defer stats.Close()
	c, err := ebpf.NewCounter(bare.pid, "bench/targets/hot/main.go", line)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	tgt, err := ebpf.New().Attach(ctx, rte.pid)
	if err != nil {
		log.Fatal(err)
	}
	defer tgt.Detach(ctx)
	if _, err := tgt.Set(ctx, agent.Tracepoint{ID: "hot", Location: fleet.Location{Path: "bench/targets/hot/main.go", Line: line}, Capture: fleet.DefaultCapture}); err != nil {
		log.Fatal(err)
	}
	var got atomic.Int64
	go func() {
		for h := range tgt.Hits() {
			if h.Fault != nil {
				log.Fatal(h.Fault)
			}
			// A hit the full ring buffer refused is counted in the
			// next one's Dropped.
			got.Add(1 + int64(h.Dropped))
		}
	}()
	want := int64(0)
	bare.run(20)
	rte.run(20)
	want += 20
	quiesce(&got, want)
	var decoders []int
	if *nice != 19 {
		decoders = nicedThreads()
		if len(decoders) == 0 {
			log.Fatal("no thread at nice 19 to renice: the decoder runs at another")
		}
	}
	var baseNs, bareUs, rteUs, ratio, otherUs, otherRatio, versus []float64
	// prog is the capture program's run time less the bare program's, as
	// a share of a bare hit; rest is what the ratio has beyond it. quiet
	// and busy are the ratios of runs with no hit decoded during the loop
	// and with some.
	var prog, rest, quiet, busy []float64
	for r := range *runs {
		b := base.run(10_000_000)
		bns := float64(b) / 1e7
		var bu, bprog float64
		bareRun := func() {
			t0, c0 := progStats("count")
			x := bare.run(*n)
			t1, c1 := progStats("count")
			bu = (float64(x)/float64(*n) - bns) / 1e3
			bprog = float64(t1-t0) / float64(c1-c0) / 1e3
		}
		// traced runs the eBPF row with the decoder at nice, and returns
		// its cost per hit and how many hits were decoded during the loop.
		traced := func(nice int) (float64, int64) {
			if decoders != nil {
				setNice(decoders, nice)
			}
			g0 := got.Load()
			y := rte.run(*n)
			during := got.Load() - g0
			want += int64(*n)
			quiesce(&got, want)
			return (float64(y)/float64(*n) - bns) / 1e3, during
		}
		var ou, ru, eprog float64
		var oduring, during int64
		tracedRuns := func() {
			if decoders != nil && r%2 == 1 {
				// Every other run measures the other nice first.
				ou, oduring = traced(*nice)
			}
			e0, d0 := progStats("capture")
			ru, during = traced(19)
			e1, d1 := progStats("capture")
			eprog = float64(e1-e0) / float64(d1-d0) / 1e3
			if decoders != nil && r%2 == 0 {
				ou, oduring = traced(*nice)
				setNice(decoders, 19)
			}
		}
		// Which row goes first alternates, so that neither always runs
		// just after the other or after the decoding of the last run.
		if r%2 == 0 {
			bareRun()
			tracedRuns()
		} else {
			tracedRuns()
			bareRun()
		}
		baseNs, bareUs, rteUs, ratio = append(baseNs, bns), append(bareUs, bu), append(rteUs, ru), append(ratio, ru/bu)
		share := (eprog - bprog) / bu
		prog, rest = append(prog, share), append(rest, ru/bu-1-share)
		if during == 0 {
			quiet = append(quiet, ru/bu)
		} else {
			busy = append(busy, ru/bu)
		}
		fmt.Printf("run %d: bare %.2f µs/hit (program %.2f µs), ebpf %.2f µs/hit (program %.2f µs, %d hits decoded during the loop), %.3fx; load %s\n", r+1, bu,
			bprog, ru, eprog, during, ru/bu, load())
		if decoders != nil {
			otherUs, otherRatio, versus = append(otherUs, ou), append(otherRatio, ou/bu), append(versus, ou/ru)
			fmt.Printf("run %d: ebpf, decoder at nice %d, %.2f µs/hit (%d hits decoded during the loop), %.3fx the bare uprobe, %.3fx at nice 19; load %s\n", r+1, *nice, ou, oduring, ou/bu, ou/ru, load())
		}
	}
	fmt.Printf("median: untraced %.2f ns/iteration, bare %.2f, ebpf %.2f µs/hit, %.3fx (%.3f–%.3f)\n", med(baseNs), med(bareUs), med(rteUs), med(ratio), slices.Min(ratio), slices.Max(ratio))
	fmt.Printf("where the excess goes: the capture program's run time beyond the bare program's, %.3f of a bare hit (median), the rest %.3f; the ratio in %d runs with no hit decoded during the loop %s, in %d with some %s\n",
		med(prog), med(rest), len(quiet), medOrNone(quiet), len(busy), medOrNone(busy))
	verdict := "met"
	if med(ratio) > 1.1 {
		verdict = "not met"
	}
	fmt.Printf("goal: eBPF per hit ≤ 1.1× a bare uprobe: %s (%.3f×, median of %d runs; load %s)\n", verdict, med(ratio), len(ratio), load())
	if decoders != nil {
		fmt.Printf("median: ebpf with the decoder at nice %d, %.2f µs/hit, %.3fx (%.3f–%.3f); against nice 19 in the same run %.3fx (%.3f–%.3f)\n", *nice, med(otherUs), med(otherRatio), slices.Min(otherRatio), slices.Max(otherRatio),
			med(versus), slices.Min(versus), slices.Max(versus))
	}
}

// nicedThreads returns the threads of this process at nice 19: the
// decoder's, once the backend is attached.
func nicedThreads() []int {
	var tids []int
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		// getpriority's raw value is 20 - nice.
		if prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-prio == 19 {
			tids = append(tids, tid)
		}
	}
	return tids
}

func setNice(tids []int, nice int) {
	for _, tid := range tids {
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
			log.Fatalf("renicing thread %d: %v", tid, err)
		}
	}
}

// quiesce waits until got reaches want, or stops growing for half a second
// (drops of the full ring buffer at a run's end are owed to a next hit that
// has not come): the agent decodes no hit of the last run while the next
// is measured.
func quiesce(got *atomic.Int64, want int64) {
	last, since := got.Load(), time.Now()
	for got.Load() < want && time.Since(since) < 500*time.Millisecond {
		time.Sleep(10 * time.Millisecond)
		if g := got.Load(); g != last {
			last, since = g, time.Now()
		}
	}
}

func med(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

func medOrNone(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3fx", med(v))
}

func load() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Fields(string(b))[0]
}
