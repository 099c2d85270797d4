package delve_test

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
)

// floatsDir keeps float64 values in floating-point registers at its marked
// lines (it belongs to the eBPF backend's tests).
const floatsDir = "../ebpf/testdata/targets/floats"

// valuesDir is the eBPF backend's differential target, whose bursts
// (SIGUSR1) run a line many times and stop.
const valuesDir = "../ebpf/testdata/targets/values"

// TestFloatsInRegisters traces, in uprobe mode, lines of an optimized
// build whose first instruction writes a floating-point register while the
// values the test reads are in others: the thread stops after that
// instruction ran, so only the register it wrote is not the line's. Every
// float shown equals the number the target computed, and every execution
// of a line gives one hit:
//
//   - fee and pay: the first instruction loads a constant into another
//     register than amount's; amount equals n/4 (n/4+1 in payB's copy of
//     pay).
//   - add: total and p, in registers the first instruction (an integer
//     move) leaves, equal the loop's sums.
//   - mul: the first instruction multiplies into rate's register, so rate
//     is not captured, saying why; p, in another register, is right (total
//     has no location there).
func TestFloatsInRegisters(t *testing.T) {
	b := delve.New(io.Discard)
	if mode, why := b.Mode(); mode != "uprobe" {
		t.Skipf("the backend uses %s here (%v): its floats are read before the line's first instruction", mode, why)
	}
	ctx, p, tg := attachTo(t, b, floatsDir, false)
	for _, m := range []string{"fee", "pay", "add", "mul"} {
		spec := agent.Tracepoint{
			ID:       m,
			Location: fleet.Location{Path: "floats/main.go", Line: agenttest.MarkerLine(t, floatsDir+"/main.go", m)},
			Capture:  fleet.Capture{Args: true, Locals: true},
			Limits:   fleet.Limits{MaxHitsPerSecond: 1000000},
		}
		if _, err := tg.Set(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	const burst, loops = 20, 30
	prices := []float64{1.25, 2.5, 4}
	rate := 1.5
	// before[i] is total at the start of iteration i, after[i] at its end.
	var before, after [3]float64
	for i, p := range prices {
		after[i] = before[i] + p*rate
		if i+1 < len(prices) {
			before[i+1] = after[i]
		}
	}
	num := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

	seen := map[string]map[int]bool{"fee": {}, "pay": {}}
	lastI := map[string]int{"add": -1, "mul": -1}
	loopHits := map[string]int{}
	deadline := time.After(2 * time.Minute)
	for len(seen["fee"]) < burst || len(seen["pay"]) < burst || loopHits["add"] < loops || loopHits["mul"] < loops {
		var h agent.Hit
		select {
		case h = <-tg.Hits():
		case <-deadline:
			t.Fatalf("hits of the burst: fee %d, pay %d of %d; of the loop: %v of %d", len(seen["fee"]), len(seen["pay"]), burst, loopHits, loops)
		}
		if h.Fault != nil {
			t.Fatalf("fault: %v", h.Fault)
		}
		if h.Dropped != 0 || h.Uncounted.N != 0 {
			t.Fatalf("%s: %d hits dropped, %d uncounted: want every execution to give a hit", h.Tracepoint, h.Dropped, h.Uncounted.N)
		}
		vars := map[string]fleet.Variable{}
		for _, v := range append(h.Args, h.Locals...) {
			vars[v.Name] = v
		}
		switch h.Tracepoint {
		case "fee", "pay":
			n, err := strconv.Atoi(vars["n"].Value)
			if err != nil || n <= 1000 || n > 1000+burst || seen[h.Tracepoint][n] {
				t.Fatalf("%s: hit with n = %q: want each of 1001 to %d once", h.Tracepoint, vars["n"].Value, 1000+burst)
			}
			seen[h.Tracepoint][n] = true
			want := float64(n) / 4
			if h.Tracepoint == "pay" && n%2 == 1 {
				want++ // payB's copy
			}
			if got := vars["amount"].Value; got != num(want) {
				t.Errorf("%s, n = %d: amount = %q (%s), want %s", h.Tracepoint, n, got, vars["amount"].Unreadable, num(want))
			}
		case "add", "mul":
			i, err := strconv.Atoi(vars["i"].Value)
			if err != nil || i != (lastI[h.Tracepoint]+1)%len(prices) && lastI[h.Tracepoint] >= 0 {
				t.Fatalf("%s: hit with i = %q after i = %d: want each iteration once, in order", h.Tracepoint, vars["i"].Value, lastI[h.Tracepoint])
			}
			lastI[h.Tracepoint] = i
			loopHits[h.Tracepoint]++
			wantTotal := after[i]
			if h.Tracepoint == "mul" {
				wantTotal = before[i]
				if r := vars["rate"]; !strings.Contains(r.Value, "not captured") || !strings.Contains(r.Unreadable, "floating-point register") {
					t.Errorf("mul, i = %d: rate = %q (%q), want it not captured, saying the line's first instruction wrote its register", i, r.Value, r.Unreadable)
				}
			}
			if got := vars["total"].Value; got != num(wantTotal) && !(h.Tracepoint == "mul" && strings.Contains(got, "optimized away")) {
				t.Errorf("%s, i = %d: total = %q (%s), want %s", h.Tracepoint, i, got, vars["total"].Unreadable, num(wantTotal))
			}
			if got := vars["p"].Value; got != num(prices[i]) {
				t.Errorf("%s, i = %d: p = %q (%s), want %s", h.Tracepoint, i, got, vars["p"].Unreadable, num(prices[i]))
			}
		}
	}
	if !strings.Contains(p.Output(), fmt.Sprintf("BURST k=1 calls=%d", burst)) {
		t.Logf("the burst has not ended yet")
	}
}
