package ebpf_test

import (
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
)

// TestStackCache: after the first hits, whose stacks Delve walks, the
// stacks of the hits at a line, in a called function and in one inlined
// into it, are read from the target's stack cache; the package's tests
// have each of them walked by Delve too, and a difference is a fault.
func TestStackCache(t *testing.T) {
	needEBPF(t)
	bin := agenttest.BuildTarget(t, valuesDir)
	p := agenttest.Start(t, bin, "-every", "0", "-par", "2", "-burst", "20")
	tgt := attach(t, ebpf.New(), p.Pid)
	set(t, tgt, workSpec(t, "work"))
	set(t, tgt, markerSpec(t, "inl", "inl"))
	hits := burstHits(t, p, tgt, 1, 80)
	frames := map[string]int{}
	for _, h := range hits {
		if h.Fault != nil {
			t.Fatalf("fault: %v", h.Fault)
		}
		if len(h.Stack) < 3 || h.Stack[0].Function != h.Function || h.Stack[len(h.Stack)-1].Function != "runtime.goexit" {
			t.Fatalf("hit of %s: want a stack from %s down to runtime.goexit, got %+v", h.Tracepoint, h.Function, h.Stack)
		}
		frames[h.Tracepoint] = len(h.Stack)
	}
	if len(frames) != 2 {
		t.Fatalf("hits of %v, want both tracepoints", frames)
	}
	if n := ebpf.CachedStacks(tgt); n < len(hits)/2 {
		t.Errorf("%d of %d stacks read from the cache, want most", n, len(hits))
	}

	// The main goroutine's calls go through runtime.main, a frame of the
	// runtime's read like any other: with its frame pointer checked.
	p2 := agenttest.Start(t, bin, "-every", "1ms")
	tgt2 := attach(t, ebpf.New(), p2.Pid)
	set(t, tgt2, workSpec(t, "main"))
	n := 0
	for timeout := time.After(time.Minute); n < 40; n++ {
		select {
		case h := <-tgt2.Hits():
			if h.Fault != nil {
				t.Fatalf("fault: %v", h.Fault)
			}
			var fns []string
			for _, f := range h.Stack {
				fns = append(fns, f.Function)
			}
			if got, want := strings.Join(fns, " "), "main.work main.main runtime.main runtime.goexit"; got != want {
				t.Fatalf("stack %s, want %s", got, want)
			}
		case <-timeout:
			t.Fatalf("%d hits of the main goroutine in a minute, want 40", n)
		}
	}
	if c := ebpf.CachedStacks(tgt2); c < n/2 {
		t.Errorf("%d of %d stacks of the main goroutine read from the cache, want most", c, n)
	}
}
