package agenttest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
)

// SelfcheckDir is the target whose two loops check their own results: a
// tracer that corrupts a register or memory under it makes it exit with
// "WRONG …" (see testdata/targets/selfcheck).
const SelfcheckDir = "../testdata/targets/selfcheck"

// HitsFor collects the hits of a target for d from the first one, faults
// failing the test. Notices of drops alone (DropsOnly) are kept too.
func HitsFor(t testing.TB, hits <-chan agent.Hit, d time.Duration) []agent.Hit {
	t.Helper()
	var got []agent.Hit
	var end <-chan time.Time
	first := time.After(time.Minute)
	for {
		select {
		case h, ok := <-hits:
			if !ok {
				t.Fatal("the hit channel closed")
			}
			if h.Fault != nil {
				t.Fatalf("fault: %v", h.Fault)
			}
			got = append(got, h)
			if end == nil {
				end = time.After(d)
			}
		case <-first:
			if end == nil {
				t.Fatal("no hit in a minute")
			}
		case <-end:
			return got
		}
	}
}

// Rearms describes what hits say of the probes taken out and put back:
// the hits, the estimates (Uncounted) they carry, and their sum.
func Rearms(hits []agent.Hit) (n, estimates int, uncounted uint64) {
	for _, h := range hits {
		if !h.DropsOnly {
			n++
		}
		if h.Uncounted > 0 {
			estimates++
			uncounted += h.Uncounted
		}
	}
	return n, estimates, uncounted
}

// CheckSelfcheck fails the test unless the selfcheck process p is alive,
// found no wrong result, and its hot loop still runs.
func CheckSelfcheck(t testing.TB, p *Proc) {
	t.Helper()
	if strings.Contains(p.Output(), "WRONG") || !p.Alive() {
		t.Fatalf("the target was hurt: alive %v, output ends %q", p.Alive(), tail(p.Output()))
	}
	before := hotCalls(p.Output())
	CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := hotCalls(p.Output()); n <= before {
			return fmt.Errorf("the hot loop is stuck at %d calls", n)
		}
		return nil
	})
}

// hotCalls reads the last "ALIVE hot=N" selfcheck printed.
func hotCalls(out string) int64 {
	i := strings.LastIndex(out, "ALIVE hot=")
	if i < 0 {
		return -1
	}
	f := strings.Fields(out[i+len("ALIVE hot="):])
	if len(f) == 0 {
		return -1
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

func tail(s string) string {
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}
