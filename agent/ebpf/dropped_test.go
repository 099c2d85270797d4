package ebpf_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
	"github.com/riptrace/riptrace/fleet"
)

const droppedDir = "testdata/targets/dropped"

// TestDroppedParts traces, with each backend, lines of an optimized build
// where the compiler keeps only a part of a value (an empty DWARF piece
// for the rest), and holds every hit to the values the target computed:
// the part left out reads as optimized away, never as the zero Delve reads
// there, and the other parts keep their values.
//
//   - pair: p.a is k, p.b (k+6) is left out, in p and as expressions.
//   - slice: xs is k, k+1, k+2; its capacity is left out.
//   - string: the length of s is left out, so s has no value.
//   - iface: x's type (int) is kept, its data (k+40) left out.
//
// Through the eBPF backend the tests decode each hit both with the direct
// decoder and with Delve's evaluator and fail where the two differ: both
// mark the same parts.
func TestDroppedParts(t *testing.T) {
	bin := agenttest.BuildTarget(t, droppedDir)
	backends := []struct {
		name string
		new  func() agent.Backend
	}{{"delve", func() agent.Backend { return delve.New(os.Stderr) }}}
	if ebpf.Available() == nil {
		backends = append(backends, struct {
			name string
			new  func() agent.Backend
		}{"ebpf", func() agent.Backend { return ebpf.New() }})
	} else {
		t.Logf("no eBPF here: tracing with delve only")
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			p := agenttest.Start(t, bin)
			tgt := attach(t, b.new(), p.Pid)
			markers := []string{"pair", "slice", "string", "iface"}
			for _, m := range markers {
				c := fleet.Capture{Args: true, Locals: true}
				if m == "pair" {
					c.Exprs = []string{"p.a", "p.b"}
				}
				set(t, tgt, agent.Tracepoint{
					ID:       m,
					Location: fleet.Location{Path: "dropped/main.go", Line: agenttest.MarkerLine(t, droppedDir+"/main.go", m)},
					Capture:  c,
					Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
				})
			}
			// The first hits of each, and one well after (the eBPF
			// backend's direct decoder reads those past its first).
			seen := map[string]int{}
			deadline := time.After(90 * time.Second)
			for done := 0; done < len(markers); {
				var h agent.Hit
				select {
				case h = <-tgt.Hits():
				case <-deadline:
					t.Fatalf("hits by tracepoint: %v, want 5 of each", seen)
				}
				if h.Fault != nil {
					t.Fatalf("tracepoint fault: %v", h.Fault)
				}
				if seen[h.Tracepoint] >= 5 {
					continue
				}
				if err := checkDropped(h.Tracepoint, h.Hit); err != nil {
					t.Fatalf("hit %d of %s: %v", seen[h.Tracepoint]+1, h.Tracepoint, err)
				}
				if seen[h.Tracepoint]++; seen[h.Tracepoint] == 5 {
					done++
				}
			}
			if b.name == "ebpf" {
				if _, direct, _ := ebpf.DirectReads(tgt); direct == 0 {
					t.Errorf("the direct decoder read no value")
				}
			}
		})
	}
}

const optimizedAway = "(unreadable optimized away)"

// checkDropped checks a hit of tracepoint id against what the target
// computed.
func checkDropped(id string, h fleet.Hit) error {
	vars := map[string]fleet.Variable{}
	for _, v := range append(append([]fleet.Variable{}, h.Args...), h.Locals...) {
		vars[v.Name] = v
	}
	get := func(name string) (fleet.Variable, error) {
		v, ok := vars[name]
		if !ok {
			return v, fmt.Errorf("no %s in %+v", name, h)
		}
		return v, nil
	}
	switch id {
	case "pair":
		k, err := get("k")
		if err != nil {
			return err
		}
		p, err := get("p")
		if err != nil {
			return err
		}
		want := "main.pair {a: " + k.Value + ", b: " + optimizedAway + "}"
		if p.Value != want {
			return fmt.Errorf("p is %q, want %q", p.Value, want)
		}
		if len(p.Children) != 2 || p.Children[0].Value != k.Value || p.Children[1].Value != "<optimized away>" || !strings.Contains(p.Children[1].Unreadable, "optimizer") {
			return fmt.Errorf("p's fields are %+v, want a=%s and b optimized away", p.Children, k.Value)
		}
		if len(h.Exprs) != 2 || h.Exprs[0].Value != k.Value || h.Exprs[1].Value != "<optimized away>" {
			return fmt.Errorf("p.a and p.b are %+v, want %s and optimized away", h.Exprs, k.Value)
		}
	case "slice":
		xs, err := get("xs")
		if err != nil {
			return err
		}
		if len(xs.Children) != 3 {
			return fmt.Errorf("xs is %+v, want 3 elements", xs)
		}
		k, err := strconv.Atoi(xs.Children[0].Value)
		if err != nil {
			return fmt.Errorf("xs[0] is %q", xs.Children[0].Value)
		}
		want := fmt.Sprintf("[]int len: 3, cap: %s, [%d,%d,%d]", optimizedAway, k, k+1, k+2)
		if xs.Value != want {
			return fmt.Errorf("xs is %q, want %q", xs.Value, want)
		}
	case "string":
		s, err := get("s")
		if err != nil {
			return err
		}
		if s.Value != "<optimized away>" || s.Unreadable == "" {
			return fmt.Errorf("s is %+v, want it optimized away", s)
		}
	case "iface":
		k, err := get("k")
		if err != nil {
			return err
		}
		if _, err := strconv.Atoi(k.Value); err != nil {
			return fmt.Errorf("k is %+v", k)
		}
		x, err := get("x")
		if err != nil {
			return err
		}
		if want := "interface {}(int) " + optimizedAway; x.Value != want {
			return fmt.Errorf("x is %q, want %q", x.Value, want)
		}
	default:
		return fmt.Errorf("a hit of tracepoint %q", id)
	}
	return nil
}

// TestCrossCheckDecoded: the first hits at a PC decoded by the direct
// decoder are decoded by Delve's evaluator too, and a difference leaves the
// PC to Delve. At the first two hits of kinds's line the direct decoder
// decodes nothing (x has a dynamic type it has not met): those hits must
// not spend the checks, or a bug of the decoder at the next hits would go
// out unchecked. The test plays such a bug and wants no hit to show it.
func TestCrossCheckDecoded(t *testing.T) {
	needEBPF(t)
	ebpf.VerifyStacks(false) // production's checks, not the tests' of every hit
	t.Cleanup(func() { ebpf.VerifyStacks(true) })
	p := agenttest.Start(t, agenttest.BuildTarget(t, droppedDir))
	tgt := attach(t, ebpf.New(), p.Pid)
	var corrupted atomic.Int32 // by the target's decoder
	ebpf.CorruptDirect(tgt, func(h *fleet.Hit) {
		corrupted.Add(1)
		for i := range h.Args {
			h.Args[i].Value += " (corrupted)"
		}
	})
	set(t, tgt, agent.Tracepoint{
		ID:       "kinds",
		Location: fleet.Location{Path: "dropped/main.go", Line: agenttest.MarkerLine(t, droppedDir+"/main.go", "kinds")},
		Capture:  fleet.Capture{Args: true},
		Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
	})
	deadline := time.After(90 * time.Second)
	for i := 1; i <= 8; i++ {
		var h agent.Hit
		select {
		case h = <-tgt.Hits():
		case <-deadline:
			t.Fatalf("%d hits in 90s, want 8", i-1)
		}
		if h.Fault != nil {
			t.Fatalf("tracepoint fault: %v", h.Fault)
		}
		if len(h.Args) != 1 || strings.Contains(h.Args[0].Value, "corrupted") || !strings.HasPrefix(h.Args[0].Value, "interface {}(") {
			t.Fatalf("hit %d shows %+v", i, h.Args)
		}
	}
	if corrupted.Load() == 0 {
		t.Fatal("the direct decoder decoded no x: the test proves nothing")
	}
}

// TestDroppedCondition: a condition that reads a part the compiler left
// out at the line (p.b at pair's) is refused at Set on that process with a
// message saying what to do, rather than decided on the zero Delve reads
// there (p.b == 0 would hold for every hit); one that reads only the parts
// kept (p.a) is installed and filters hits. With each backend.
func TestDroppedCondition(t *testing.T) {
	bin := agenttest.BuildTarget(t, droppedDir)
	backends := map[string]func() agent.Backend{"delve": func() agent.Backend { return delve.New(os.Stderr) }}
	if ebpf.Available() == nil {
		backends["ebpf"] = func() agent.Backend { return ebpf.New() }
	} else {
		t.Logf("no eBPF here: tracing with delve only")
	}
	for name, b := range backends {
		t.Run(name, func(t *testing.T) {
			p := agenttest.Start(t, bin)
			tgt := attach(t, b(), p.Pid)
			checkDroppedCondition(t, tgt)
		})
	}
}

func checkDroppedCondition(t *testing.T, tgt agent.Target) {
	t.Helper()
	at := func(marker string) fleet.Location {
		return fleet.Location{Path: "dropped/main.go", Line: agenttest.MarkerLine(t, droppedDir+"/main.go", marker)}
	}
	for _, c := range []struct{ marker, cond, operand string }{
		{"pair", "p.b == 0", "p.b"},
		{"pair", "k > 0 && p.b != 7", "p.b"},
		{"slice", "cap(xs) == 3", "xs"},
		{"string", "len(s) == 5", "s"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err := tgt.Set(ctx, agent.Tracepoint{ID: "bad", Location: at(c.marker), Condition: c.cond, Capture: fleet.Capture{Args: true}})
		cancel()
		fe := fleet.AsError(err)
		if err == nil || fe.Code != fleet.CodeBadCondition || !strings.Contains(fe.Message, "reads "+c.operand+",") ||
			!strings.Contains(fe.Message, "optimized away") || !strings.Contains(fe.Message, "-gcflags=all=-N -l") {
			t.Fatalf("setting the condition %q at %s: %v, want it refused as reading %s, optimized away", c.cond, c.marker, err, c.operand)
		}
	}
	// p.a is kept: its condition is installed and holds for odd k only.
	set(t, tgt, agent.Tracepoint{ID: "good", Location: at("pair"), Condition: "p.a % 2 == 1", Capture: fleet.Capture{Args: true, Locals: true},
		Limits: fleet.Limits{MaxHitsPerSecond: 1000}})
	deadline := time.After(90 * time.Second)
	for i := 0; i < 5; i++ {
		var h agent.Hit
		select {
		case h = <-tgt.Hits():
		case <-deadline:
			t.Fatalf("%d hits of p.a %% 2 == 1 in 90s, want 5", i)
		}
		if h.Fault != nil {
			t.Fatalf("tracepoint fault: %v", h.Fault)
		}
		if len(h.Args) != 1 || h.Args[0].Name != "k" {
			t.Fatalf("hit %d has args %+v, want k", i+1, h.Args)
		}
		if k, err := strconv.Atoi(h.Args[0].Value); err != nil || k%2 != 1 {
			t.Fatalf("hit %d has k = %q, want an odd k", i+1, h.Args[0].Value)
		}
	}
}

// TestDroppedConditionAtHit: where Set cannot tell from DWARF whether a
// condition reads a part left out (an inlined call's variables), the first
// hit at the PC does, before the condition decides anything: the
// tracepoint is removed with the same message, and no hit is shown.
func TestDroppedConditionAtHit(t *testing.T) {
	needEBPF(t)
	dlvvalue.DecideAtFirstHit(true)
	t.Cleanup(func() { dlvvalue.DecideAtFirstHit(false) })
	checkRefusedAtFirstHit(t, "pair", "p.b == 0 || p.a > 0", "no hit in 90s")
}

// TestDroppedConditionInlined: at the line of an inlined call, where Set
// cannot tell from DWARF alone, the first hit refuses a condition that
// reads a part left out there (p.b at inlined's) before it decides any
// hit on the zero read for it: p.b > 6 holds at every call, and on the
// zero at none. The Delve backend's TestDroppedConditionInlined holds
// its two modes to the same.
func TestDroppedConditionInlined(t *testing.T) {
	needEBPF(t)
	checkRefusedAtFirstHit(t, "inlined", "p.b > 6", "neither a hit nor a fault in 90s: the condition was decided on the zero read for p.b")
}

// checkRefusedAtFirstHit sets cond at the dropped target's line marked
// marker and wants its first hit refused as reading p.b, left out there;
// timeout says what no hit nor fault in 90 s means.
func checkRefusedAtFirstHit(t *testing.T, marker, cond, timeout string) {
	t.Helper()
	p := agenttest.Start(t, agenttest.BuildTarget(t, droppedDir))
	tgt := attach(t, ebpf.New(), p.Pid)
	set(t, tgt, agent.Tracepoint{
		ID:        marker,
		Location:  fleet.Location{Path: "dropped/main.go", Line: agenttest.MarkerLine(t, droppedDir+"/main.go", marker)},
		Condition: cond,
		Capture:   fleet.Capture{Args: true},
		Limits:    fleet.Limits{MaxHitsPerSecond: 1000},
	})
	select {
	case h := <-tgt.Hits():
		if h.Fault == nil {
			t.Fatalf("a hit shown: %+v", h.Hit)
		}
		if fe := fleet.AsError(h.Fault); fe.Code != fleet.CodeBadCondition || !strings.Contains(fe.Message, "reads p.b,") || !strings.Contains(fe.Message, "optimized away") {
			t.Fatalf("fault %v, want the condition refused as reading p.b", h.Fault)
		}
	case <-time.After(90 * time.Second):
		t.Fatal(timeout)
	}

}
