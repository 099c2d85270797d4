package ebpf_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"golang.org/x/sys/unix"
)

// BenchmarkDecode measures what the agent spends to decode a hit with
// arguments, locals and 8 frames: the CPU time of this process (the
// reader, Delve's evaluation, the hit's tree) over bursts of 800 hits of
// the values target, per hit delivered. Run it with -cpuprofile to see
// where it goes.
func BenchmarkDecode(b *testing.B) {
	if err := ebpf.Available(); err != nil {
		b.Skipf("eBPF is not available here: %v", err)
	}
	ebpf.VerifyStacks(false)
	defer ebpf.VerifyStacks(true)
	bin := agenttest.BuildTarget(b, valuesDir)
	p := agenttest.Start(b, bin, "-every", "0", "-par", "8", "-burst", "100")
	ctx := context.Background()
	tgt, err := ebpf.New().Attach(ctx, p.Pid)
	if err != nil {
		b.Fatal(err)
	}
	defer tgt.Detach(ctx)
	spec := fleet.Spec{
		ID:       "decode",
		Location: fleet.Location{Path: "main.go", Line: agenttest.MarkerLine(b, valuesDir+"/main.go", "work")},
		Capture:  fleet.DefaultCapture,
	}
	spec.Capture.StackDepth = 8
	if _, err := tgt.Set(ctx, spec); err != nil {
		b.Fatal(err)
	}
	k := 0
	burst := func() int {
		k++
		if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
			b.Fatal(err)
		}
		n := 0
		done := fmt.Sprintf("BURST k=%d ", k)
		for {
			select {
			case h := <-tgt.Hits():
				if h.Fault != nil {
					b.Fatal(h.Fault)
				}
				n++
				if n == 800 {
					return n
				}
			case <-time.After(3 * time.Second):
				if strings.Contains(p.Output(), done) {
					return n
				}
			}
		}
	}
	burst() // the first hits load Delve's types
	var cpu time.Duration
	hits := 0
	b.ResetTimer()
	for range b.N {
		before := selfCPU()
		hits += burst()
		cpu += selfCPU() - before
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(hits), "cpu-µs/hit")
}

func selfCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
