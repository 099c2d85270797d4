package delve_test

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
)

// TestInt3ThreadEndsWhileStopping: Delve stops the whole process at each
// hit, waiting for every thread it sent SIGSTOP to; a thread that ends
// instead must not leave that wait hanging with the process stopped for
// good. The selfcheck target ends a thread every millisecond, and the
// disarm window is shortened to 5 ms so that stops come by the hundred a
// second (hits, and the manual stops that put the breakpoint back). Each of
// 2000 hits must come within 10 s of the last, and the target runs on
// right. Before the fix, 5 of 8 such runs went silent within 10 s, the
// target stopped for good (load average 12).
//
// It runs only under make stress-int3 (StressInt3Env set): a few runs in
// 100 still fail through int3 mode's open problems (5 of 210 ended with
// Clear never answered, the target not stopped; README, "What a tracepoint may
// ask"), and make test must not.
// stressInt3Env names the environment variable that lets the int3 stress
// test run.
const stressInt3Env = "RIPTRACE_STRESS_INT3"

func TestInt3ThreadEndsWhileStopping(t *testing.T) {
	if os.Getenv(stressInt3Env) == "" {
		t.Skipf("a stress test of int3 mode: make stress-int3 runs it (%s=1)", stressInt3Env)
	}
	t.Setenv(agent.WindowEnv, "5ms") // the worker inherits it
	ctx, p, tg := attachTo(t, delve.NewInt3(io.Discard), selfcheckDir, false, "-churn", "1ms")
	p.WaitOutput(t, "ALIVE", 30*time.Second)
	spec := hotSpec(t, "churn", 50)
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	const want = 2000
	const silence = 10 * time.Second
	for n := 0; n < want; {
		select {
		case h, ok := <-tg.Hits():
			if !ok {
				t.Fatalf("the hit channel closed after %d hits", n)
			}
			if h.Fault != nil {
				t.Fatalf("after %d hits: %v", n, h.Fault)
			}
			n++
		case <-time.After(silence):
			t.Fatalf("no hit for %v after %d hits: the process is stopped for good", silence, n)
		}
	}
	if err := tg.Clear(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	agenttest.CheckSelfcheck(t, p)
}
