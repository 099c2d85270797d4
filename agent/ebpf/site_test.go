package ebpf_test

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
)

const floatsDir = "testdata/targets/floats"

func floatSpec(t *testing.T, id, marker string) agent.Tracepoint {
	return agent.Tracepoint{
		ID:       id,
		Location: fleet.Location{Path: "floats/main.go", Line: agenttest.MarkerLine(t, floatsDir+"/main.go", marker)},
		Capture:  fleet.Capture{Args: true},
		Limits:   fleet.Limits{MaxHitsPerSecond: 1000000},
	}
}

// TestProbeMovesForFloats traces the line of charge where amount, a
// float64, is in a floating-point register at the line's first
// instruction and only on the stack at its last, the call. The eBPF
// backend probes the call instead and shows the number, and the log
// message prints it; both equal what the Delve backend shows, with its
// breakpoints before the line's first instruction, in another process of
// the same program through the same executions (the differential
// corpus's way), and the number the target passed. Every execution of the
// line gives one hit: n runs through the burst without a gap or a repeat.
func TestProbeMovesForFloats(t *testing.T) {
	needEBPF(t)
	// Delve's breakpoints read the line's first instruction's registers,
	// floating-point ones included, before it runs.
	t.Setenv("RIPTRACE_DELVE_MODE", "int3")
	for _, build := range []struct {
		name  string
		flags []string
	}{{"optimized", nil}, {"pie", []string{"-buildmode=pie"}}} {
		t.Run(build.name, func(t *testing.T) { probeMovesForFloats(t, build.flags) })
	}
}

func probeMovesForFloats(t *testing.T, flags []string) {
	bin := agenttest.BuildTarget(t, floatsDir, flags...)
	pd := agenttest.Start(t, bin)
	pe := agenttest.Start(t, bin)
	dt := attach(t, delve.New(os.Stderr), pd.Pid)
	et := attach(t, ebpf.New(), pe.Pid)
	spec := floatSpec(t, "fee", "fee")
	spec.LogMessage = "paid {amount}"
	dpl := set(t, dt, spec)
	epl := set(t, et, spec)
	if len(epl.PCs) != 1 || len(dpl.PCs) != 1 || len(flags) == 0 && epl.PCs[0] <= dpl.PCs[0] {
		// A position-independent build loads at another address in each
		// process: there only the placement's words say where.
		t.Fatalf("ebpf probes %#x, delve %#x: want one PC each, ebpf's later in the line", epl.PCs, dpl.PCs)
	}
	if !strings.Contains(epl.ProbeWhy, "amount is in memory") {
		t.Errorf("the placement says %q, want why the probe moved: amount is in memory there", epl.ProbeWhy)
	}

	const burst = 20
	dhits := burstHits(t, pd, dt, 1, burst)
	ehits := burstHits(t, pe, et, 1, burst)
	if len(dhits) != burst || len(ehits) != burst {
		t.Fatalf("a burst of %d executions of the line: delve %d hits, ebpf %d", burst, len(dhits), len(ehits))
	}
	dByN := make(map[int]fleet.Hit)
	for _, h := range dhits {
		dByN[argN(t, h.Hit)] = h.Hit
	}
	seen := make(map[int]bool)
	for _, h := range ehits {
		n := argN(t, h.Hit)
		if n <= 1000 || n > 1000+burst || seen[n] {
			t.Fatalf("ebpf hit with n = %d: want each of 1001 to %d once", n, 1000+burst)
		}
		seen[n] = true
		want := strconv.FormatFloat(float64(n)/4, 'g', -1, 64)
		amount := argValue(h.Hit, "amount")
		if amount != want || h.Message != "paid "+want {
			t.Errorf("n = %d: ebpf shows amount = %q and logs %q, want %s", n, amount, h.Message, want)
		}
		d, ok := dByN[n]
		if !ok {
			t.Fatalf("no delve hit for n = %d", n)
		}
		compareVars(t, fmt.Sprintf("n = %d args", n), d.Args, h.Args)
		if d.Message != h.Message {
			t.Errorf("n = %d: delve logs %q, ebpf %q", n, d.Message, h.Message)
		}
	}
}

func argValue(h fleet.Hit, name string) string {
	for _, a := range h.Args {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// TestAutoKeepsEBPFWhereAProbeCanRead: under auto, a log message that
// reads a float in a floating-point register at the line's first
// instruction stays with eBPF when a later instruction of the line has it
// in memory, and the status says where the probe went and why.
func TestAutoKeepsEBPFWhereAProbeCanRead(t *testing.T) {
	needEBPF(t)
	p := agenttest.Start(t, agenttest.BuildTarget(t, floatsDir))
	b := &agent.Backends{Default: agent.BackendAuto, EBPF: ebpf.New(), Delve: delve.New(io.Discard)}
	tgt := attach(t, b, p.Pid)
	spec := floatSpec(t, "fee", "fee")
	spec.LogMessage = "paid {amount}"
	pl := set(t, tgt, spec)
	if pl.Backend != agent.BackendEBPF || pl.BackendWhy != "" || !strings.Contains(pl.ProbeWhy, "amount is in memory") {
		t.Errorf("placed with %q (%q), probe %q: want ebpf, saying the probe went where amount is in memory", pl.Backend, pl.BackendWhy, pl.ProbeWhy)
	}
	hits := burstHits(t, p, tgt, 1, 20)
	for _, h := range hits {
		if _, err := strconv.ParseFloat(strings.TrimPrefix(h.Message, "paid "), 64); err != nil {
			t.Errorf("log message %q, want the amount as a number", h.Message)
		}
	}
}

// TestProbeSitePerInlinedCopy traces a line inlined into two functions:
// in payA's copy amount is on the stack at the line's call, so that copy's
// probe moves there and shows the number; in payB's it is in a
// floating-point register at every instruction of the line, so that
// copy's probe stays and amount is not captured, never a wrong number.
// Each execution of either copy gives one hit. Under auto, the log message
// goes to Delve, saying why.
func TestProbeSitePerInlinedCopy(t *testing.T) {
	needEBPF(t)
	bin := agenttest.BuildTarget(t, floatsDir)
	p := agenttest.Start(t, bin)
	tgt := attach(t, ebpf.New(), p.Pid)
	spec := floatSpec(t, "pay", "pay")
	spec.LogMessage = "paid {amount}"
	pl := set(t, tgt, spec)
	if len(pl.PCs) != 2 || !strings.Contains(pl.ProbeWhy, "amount is in memory") {
		t.Fatalf("placed at %#x, saying %q: want two copies, one probe moved where amount is in memory", pl.PCs, pl.ProbeWhy)
	}
	const burst = 20
	hits := burstHits(t, p, tgt, 1, burst)
	if len(hits) != burst {
		t.Fatalf("a burst of %d executions of the line: %d hits", burst, len(hits))
	}
	seen := make(map[int]bool)
	for _, h := range hits {
		n := argN(t, h.Hit)
		if n <= 1000 || n > 1000+burst || seen[n] {
			t.Fatalf("hit with n = %d: want each of 1001 to %d once", n, 1000+burst)
		}
		seen[n] = true
		amount, msg := argValue(h.Hit, "amount"), h.Message
		if n%2 == 0 {
			// payA's copy: the probe moved.
			want := strconv.FormatFloat(float64(n)/4, 'g', -1, 64)
			if amount != want || msg != "paid "+want {
				t.Errorf("n = %d, in payA: amount = %q, logged %q; want %s", n, amount, msg, want)
			}
			continue
		}
		if !strings.Contains(amount, "not captured") || !strings.Contains(msg, "floating-point register") {
			t.Errorf("n = %d, in payB: amount = %q, logged %q; want it not captured, in a floating-point register", n, amount, msg)
		}
	}

	pa := agenttest.Start(t, bin)
	auto := attach(t, &agent.Backends{Default: agent.BackendAuto, EBPF: ebpf.New(), Delve: delve.New(io.Discard)}, pa.Pid)
	pl = set(t, auto, spec)
	if pl.Backend != agent.BackendDelve || !strings.Contains(pl.BackendWhy, "which is in a floating-point register at every address of main.go:") {
		t.Errorf("under auto: placed with %q (%q), want delve, saying amount is in a floating-point register at every address of the line", pl.Backend, pl.BackendWhy)
	}
}
