package ebpf_test

import (
	"fmt"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// lateness is what an unrelated goroutine of the agent suffered in a phase.
type lateness struct {
	p99, max time.Duration // of 1 ms sleeps, beyond the 1 ms
	stopping time.Duration // the longest wait to stop the world for the GC, to a power of 2
	gcs      uint64
}

func (l lateness) String() string {
	return fmt.Sprintf("1 ms sleeps woke late by %v at the 99th percentile, at most %v; %d GCs, the longest stop of the world waited %v", l.p99, l.max, l.gcs, l.stopping)
}

// measure sleeps 1 ms over and over for d on a goroutine of its own, and
// returns how late it woke.
func measure(d time.Duration, every func()) lateness {
	var late []time.Duration
	ms := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/sched/pauses/stopping/gc:seconds"}}
	metrics.Read(ms)
	gcs := ms[0].Value.Uint64()
	stops := slices.Clone(ms[1].Value.Float64Histogram().Counts)
	next := time.Now()
	for end := time.Now().Add(d); time.Now().Before(end); {
		if time.Now().After(next) {
			every()
			next = time.Now().Add(time.Second)
		}
		t0 := time.Now()
		time.Sleep(time.Millisecond)
		late = append(late, time.Since(t0)-time.Millisecond)
	}
	metrics.Read(ms)
	l := lateness{gcs: ms[0].Value.Uint64() - gcs}
	h := ms[1].Value.Float64Histogram()
	for i, n := range h.Counts {
		if n > stops[i] {
			l.stopping = time.Duration(h.Buckets[i] * 1e9)
		}
	}
	slices.Sort(late)
	l.p99, l.max = late[len(late)*99/100], late[len(late)-1]
	return l
}

// TestNicedDecoderKeepsAgentScheduled: on a host kept busy, the thread
// that decodes hits at nice 19 waits long for the CPU, and must not make
// the rest of the agent wait with it. A goroutine sleeping 1 ms over and
// over measures how late the agent's other goroutines run, with the
// decoder niced, and with the same thread at the agent's priority, side by
// side in turns, so that the comparison follows the load. The test's own
// threads run at nice -10 meanwhile: the busy loops and whatever else
// loads the machine then delay them little, and what is left is the wait
// for a P, which the niced thread holds while the kernel keeps it off the
// CPU. Two executables are traced, so two niced threads could hold both
// Ps of a 2-CPU host: before each niced thread had a P of its own, the
// niced turns were 14x later at the 99th percentile (load 38).
//
// It logs, and does not hold against a bound, how long the GC waited to
// stop the world: a P held by a descheduled niced thread still delays
// that, by up to 537 ms measured at nice 19 (67 ms with the decoder at
// the agent's priority, 59 ms at nice 10). RIPTRACE_TEST_NICED=19,10,0
// measures the nice values listed, in turns, each with the load.
func TestNicedDecoderKeepsAgentScheduled(t *testing.T) {
	needEBPF(t)
	if os.Getenv("RIPTRACE_TEST_NICED") == "" {
		// It loads the machine with busy loops for its whole run, under
		// make test's other packages, and it caught the stall in 1 of 2
		// runs before the fix: a measurement, while TestDecodeYields
		// checks the fix itself (the niced thread's own P).
		t.Skip("set RIPTRACE_TEST_NICED=1 to measure the agent's scheduling beside niced decoders")
	}
	ebpf.ForgetParked()
	before := niceThreads(t)
	// Two executables, two readers, two niced threads: as many as
	// GOMAXPROCS on this 2-CPU host.
	stop := make(chan struct{})
	var drained sync.WaitGroup
	defer func() { close(stop); drained.Wait() }()
	for _, flags := range [][]string{nil, {agenttest.NoOpt}} {
		bin := agenttest.BuildTarget(t, valuesDir, flags...)
		p := agenttest.Start(t, bin, "-every", "100us")
		tgt := attach(t, ebpf.New(), p.Pid)
		tp := workSpec(t, "hot")
		tp.Capture.StackDepth = 0
		tp.Limits.MaxHitsPerSecond = 1000000
		set(t, tgt, tp)
		drained.Go(func() {
			for {
				select {
				case <-tgt.Hits():
				case <-stop:
					return
				}
			}
		})
	}
	var tids []int
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		tids = tids[:0]
		for id := range niceThreads(t) {
			if !before[id] {
				tid, _ := strconv.Atoi(id)
				tids = append(tids, tid)
			}
		}
		if len(tids) < 2 {
			return fmt.Errorf("%d new threads at nice 19 once attached to two executables, want 2", len(tids))
		}
		return nil
	})
	busyLoops(t)
	// Threads start at the nice of the thread that makes them: set every
	// thread of ours but the decoder's, again and again.
	renice := func(nice int) {
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			if id, _ := strconv.Atoi(task.Name()); !slices.Contains(tids, id) {
				unix.Setpriority(unix.PRIO_PROCESS, id, nice)
			}
		}
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, -10); err != nil {
		t.Skipf("raising this thread's priority: %v", err)
	}
	defer renice(0)
	// RIPTRACE_TEST_NICED=19,10,0 measures those nice values in turn.
	levels := []int{19, 0}
	if list := strings.Split(os.Getenv("RIPTRACE_TEST_NICED"), ","); len(list) > 1 {
		levels = levels[:0]
		for _, f := range list {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("RIPTRACE_TEST_NICED=%s: want nice values, as 19,10,0", os.Getenv("RIPTRACE_TEST_NICED"))
			}
			levels = append(levels, v)
		}
		for _, v := range []int{19, 0} {
			if !slices.Contains(levels, v) {
				levels = append(levels, v)
			}
		}
	}
	p99 := map[int][]time.Duration{}
	stopping := map[int][]time.Duration{}
	rounds := max(3, 6/len(levels))
	for round := range rounds {
		for _, nice := range levels {
			for _, tid := range tids {
				if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
					t.Fatal(err)
				}
			}
			l := measure(5*time.Second, func() { renice(-10) })
			p99[nice] = append(p99[nice], l.p99)
			stopping[nice] = append(stopping[nice], l.stopping)
			t.Logf("round %d, decoder at nice %2d, load %s: %v", round, nice, loadAverage(), l)
		}
	}
	for _, nice := range levels {
		slices.Sort(p99[nice])
		slices.Sort(stopping[nice])
		t.Logf("decoder at nice %2d: median p99 %v; the GC's longest wait to stop the world, median %v, at most %v", nice,
			p99[nice][len(p99[nice])/2], stopping[nice][len(stopping[nice])/2], stopping[nice][len(stopping[nice])-1])
	}
	n, p0 := p99[19][len(p99[19])/2], p99[0][len(p99[0])/2]
	t.Logf("median p99: niced %v, at the agent's priority %v (%.2fx)", n, p0, float64(n)/float64(p0))
	if n > 3*p0+10*time.Millisecond {
		t.Errorf("with the decoder niced, a goroutine woke %v late at the 99th percentile (median of 3 turns), want under 3 × %v + 10ms, what it was with the decoder at the agent's priority: the niced thread holds a P the rest of the agent needs", n, p0)
	}
}

// loadAverage is the host's load over the last minute, for the log.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}
