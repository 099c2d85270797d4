package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// floatsDir keeps float64 values in floating-point registers at its marked
// lines (it belongs to the eBPF backend's tests).
var floatsDir = filepath.Join("ebpf", "testdata", "targets", "floats")

// TestFloatLogpointStatus: logpoints that print a float64 which is in a
// floating-point register at their line's first instruction, under backend
// auto. Where a later instruction of the line has it in memory, eBPF serves
// the logpoint there and the status says so; where none does (the loop's
// total; amount in payB's inlined copy of pay), Delve serves it and the
// status says why. All print the numbers the target computed.
func TestFloatLogpointStatus(t *testing.T) {
	if err := ebpf.Available(); err != nil {
		t.Skipf("no eBPF: %v", err)
	}
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	n := hostSeq.Add(1)
	exe := fmt.Sprintf("floats-%d-%d", os.Getpid(), n)
	cfg := agent.Config{Host: fmt.Sprintf("floats-%d", n), Processes: []string{exe}, BackendName: agent.BackendAuto}
	agenttest.RunAgentWith(t, s, cfg, nil, ebpf.New())
	p := agenttest.Start(t, agenttest.Alias(t, agenttest.BuildTarget(t, floatsDir), exe))

	src := filepath.Join(floatsDir, "main.go")
	for _, tc := range []struct {
		marker, log, status string
	}{
		{"fee", "paid {amount}", "(ebpf: probed "},
		{"add", "running total {total}", "(delve, not ebpf: the log message needs total (float64), which is in a floating-point register at every address of main.go:"},
		{"pay", "paid {amount}", "(delve, not ebpf: the log message needs amount (float64), which is in a floating-point register at every address of main.go:"},
	} {
		spec := &fleet.Spec{
			ID:         fmt.Sprintf("floats-%s-%d", tc.marker, n),
			Location:   fleet.Location{Path: "floats/main.go", Line: agenttest.MarkerLine(t, src, tc.marker)},
			Selector:   fleet.Selector{Pids: []int{p.Pid}},
			LogMessage: tc.log,
			Limits:     fleet.Limits{MaxHitsPerSecond: 1000},
		}
		if err := c.Declare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		st := awaitStatusOn(t, c, spec.ID, installed(p.Pid))
		t.Logf("%s: %s", tc.marker, st.Message)
		if !strings.Contains(st.Message, tc.status) {
			t.Errorf("%s: status %q, want it to say %q", tc.marker, st.Message, tc.status)
		}
		if tc.marker == "fee" && !strings.Contains(st.Message, "amount is in memory") {
			t.Errorf("%s: status %q, want it to say why the probe moved", tc.marker, st.Message)
		}
	}
	// charge runs in bursts.
	if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := c.Hits(ctx, fleet.HitOptions{Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	seen := map[string]bool{}
	for len(seen) < 3 {
		h, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("reading hits, with a number logged by %v: %v", seen, err)
		}
		_, num, _ := strings.Cut(h.Message, " ")
		num = strings.TrimPrefix(num, "total ")
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			t.Fatalf("%s logged %q, want a number", h.Tracepoint, h.Message)
		}
		// The numbers the target computes: amount is n/4 for n from 1001
		// to 1020 in the first burst (n/4+1 in payB's copy of pay, n
		// odd); total is 1.875, 5.625 then 11.625 through sum's loop.
		quarter := func(f float64) bool { return f*4 == float64(int(f*4)) && f*4 > 1000 && f*4 <= 1020 }
		if strings.HasPrefix(h.Tracepoint, "floats-fee") && !quarter(f) ||
			strings.HasPrefix(h.Tracepoint, "floats-pay") && !(quarter(f) && int(f*4)%2 == 0) && !(quarter(f-1) && int((f-1)*4)%2 == 1) ||
			strings.HasPrefix(h.Tracepoint, "floats-add") && f != 1.875 && f != 5.625 && f != 11.625 {
			t.Fatalf("%s logged %q: not a number the target computed", h.Tracepoint, h.Message)
		}
		seen[h.Tracepoint] = true
	}
}
