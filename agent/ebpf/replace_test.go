package ebpf

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// TestReplaceFailsMidway: a replacement that fails after it took a bucket,
// a plan slot and attached a probe gives all of them back, and leaves the
// tracepoint it would have replaced as it was. Running out of plan slots
// on the second PC of a line stands in for any failure there.
func TestReplaceFailsMidway(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("eBPF is not available here: %v", err)
	}
	const dir = "testdata/targets/values"
	p := agenttest.Start(t, agenttest.BuildTarget(t, dir), "-every", "0", "-par", "1", "-burst", "10")
	tgt, err := newTarget(p.Pid, "/proc/"+itoa(p.Pid)+"/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		tgt.close(nil)
		<-tgt.done
	}()
	ctx := context.Background()
	spec := func(marker string) agent.Tracepoint {
		return agent.Tracepoint{ID: "r", Location: fleet.Location{Path: "main.go", Line: agenttest.MarkerLine(t, dir+"/main.go", marker)}, Capture: fleet.Capture{Args: true}}
	}
	if _, err := tgt.Set(ctx, spec("work")); err != nil {
		t.Fatal(err)
	}

	tgt.mu.Lock()
	old := tgt.tps["r"]
	cookies := slices.Sorted(mapKeys(tgt.x.byCookie))
	buckets := inUse(tgt.buckets)
	last := tgt.coll.Maps["plans"].MaxEntries() - 1
	tgt.nextPlan = last // one slot left
	tgt.mu.Unlock()
	fds := openFiles(t)

	pl, err := tgt.Set(ctx, spec("twopcs"))
	if err == nil || !strings.Contains(err.Error(), "too many probes") {
		t.Fatalf("replacing with a line of two PCs, with one plan slot left: %v (%+v), want too many probes", err, pl)
	}
	tgt.mu.Lock()
	if tgt.tps["r"] != old {
		t.Errorf("the old tracepoint is no longer installed")
	}
	if got := slices.Sorted(mapKeys(tgt.x.byCookie)); !slices.Equal(got, cookies) {
		t.Errorf("probes by cookie %#x after the failed replacement, want the old ones %#x", got, cookies)
	}
	if got := inUse(tgt.buckets); !slices.Equal(got, buckets) {
		t.Errorf("buckets %v in use after the failed replacement, want %v as before", got, buckets)
	}
	if !slices.Equal(tgt.freePlan, []uint32{last}) {
		t.Errorf("free plan slots %v after the failed replacement, want the one it took, %d", tgt.freePlan, last)
	}
	tgt.mu.Unlock()
	if got := openFiles(t); got != fds {
		t.Errorf("%d files open after the failed replacement, %d before: its probe was not detached", got, fds)
	}

	// The old tracepoint hits on; a probe left on the go statement would
	// have hit too, but records of unknown probes are skipped, so count
	// what the old one delivers only.
	if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 10; n++ {
		select {
		case h := <-tgt.hits:
			if h.Fault != nil || h.Tracepoint != "r" || h.Line != old.spec.Location.Line {
				t.Fatalf("hit %d: %+v, want one of the old tracepoint", n, h)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d hits of the old tracepoint in 30s, want 10", n)
		}
	}
}

func inUse(slots []bool) []int {
	var out []int
	for i, used := range slots {
		if used {
			out = append(out, i)
		}
	}
	return out
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// openFiles counts this process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(fmt.Errorf("listing open files: %w", err))
	}
	return len(fds)
}
