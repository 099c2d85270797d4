// Command timeline is what `make bench-timeline` runs: the cost of putting
// hits in the order they ran (fleet.Timeline) against reading them in the
// order they arrived, with issue 13's goals.
//
//   - captured → placed, p50 and p99: a real agent (the eBPF backend where
//     the kernel has it) on a target calling a traced line 100 times a
//     second, with the default promise and watermarks, read through the
//     timeline; the anchor is the same hits read in arrival order
//     (agent's BenchmarkTimelineLatency). Goal: p99 ≤ 250 ms on loopback.
//   - ordering throughput: the ordering core alone on one core, 100k hits
//     of three hosts with skewed clocks (fleet's BenchmarkTimelineCore).
//     Goal: ≥ 100k hits/s.
//   - the cost per hit of a client reading through the timeline against
//     decoding the same hits in arrival order (fleet's BenchmarkTimeline).
//
// It runs the benchmarks with go test from the repository's root, prints
// one table with met or not met for each goal, and the load average before
// and after: on a shared machine the figures move with it.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/riptrace/riptrace/bench/internal/benchkit"
)

// metrics are a benchmark's reported values by unit, from go test's
// output.
type metrics map[string]float64

// run runs go test args and returns the metrics of each benchmark by name
// (without the -N suffix of GOMAXPROCS).
func run(args ...string) map[string]metrics {
	cmd := exec.Command("go", append([]string{"test", "-count", "1", "-run", "^$"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		log.Fatalf("go test %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	res := make(map[string]metrics)
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := make(metrics)
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		res[name] = m
	}
	return res
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func main() {
	log.SetFlags(0)
	before := benchkit.LoadAvg()
	fmt.Fprintf(os.Stderr, "load average %s; running the benchmarks (about a minute)\n", before)
	core := run("./fleet", "-bench", "^BenchmarkTimelineCore$", "-benchtime", "3x", "-cpu", "1")["BenchmarkTimelineCore"]
	client := run("./fleet", "-bench", "^BenchmarkTimeline$", "-benchtime", "3x", "-cpu", "1")
	lat := run("./agent", "-bench", "^BenchmarkTimelineLatency$", "-benchtime", "2x")["BenchmarkTimelineLatency"]
	arrival, timeline := client["BenchmarkTimeline/arrival"], client["BenchmarkTimeline/timeline"]
	if core == nil || arrival == nil || timeline == nil || lat == nil {
		log.Fatal("a benchmark reported nothing: run go test -bench Timeline ./fleet ./agent to see why")
	}

	fmt.Printf("%-44s %12s %12s %s\n", "timeline (issue 13)", "measured", "goal", "")
	fmt.Printf("%-44s %9.1f ms %12s\n", "captured → placed, p50", lat["placed-p50-ms"], "")
	fmt.Printf("%-44s %9.1f ms %9s ms %s\n", "captured → placed, p99", lat["placed-p99-ms"], "≤ 250", verdict(lat["placed-p99-ms"] <= 250))
	fmt.Printf("%-44s %9.1f ms %12s\n", "captured → read in arrival order, p50", lat["arrival-p50-ms"], "")
	fmt.Printf("%-44s %9.1f ms %12s\n", "captured → read in arrival order, p99", lat["arrival-p99-ms"], "")
	fmt.Printf("%-44s %+9.1f ms %12s\n", "latency added to a client, p50", lat["placed-p50-ms"]-lat["arrival-p50-ms"], "")
	fmt.Printf("%-44s %12.0f %12s\n", "hits placed late", lat["late"], "0")
	fmt.Printf("%-44s %8.0fk/s %8s k/s %s\n", "ordering core, one core", core["hits/s"]/1e3, "≥ 100", verdict(core["hits/s"] >= 100e3))
	fmt.Printf("%-44s %9.1f µs %12s\n", "a client's cost per hit, arrival order", arrival["ns/hit"]/1e3, "")
	fmt.Printf("%-44s %9.1f µs %11.2f×\n", "a client's cost per hit, timeline order", timeline["ns/hit"]/1e3, timeline["ns/hit"]/arrival["ns/hit"])
	fmt.Printf("load average before %s, after %s (2 CPUs)\n", before, benchkit.LoadAvg())
}
