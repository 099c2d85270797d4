// Package testsupport is what the tests of every package share: waiting for
// a condition with a deadline ([CheckFor], [Wait]), checking that no
// goroutine of the code under test outlives the tests ([NoGoroutines]), and
// running processes with their output kept ([Proc]: targets with [Start],
// commands with [Launch]).
//
// It imports nothing of RipTrace and nothing beyond the standard library, so
// that any package's tests (fleet's included) can use it without linking
// the agent or Delve; helpers that run targets and agents are in
// agent/agenttest.
package testsupport

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Wait calls f every step until it returns nil, and returns f's last error
// if that does not happen within total.
func Wait(total, step time.Duration, f func() error) error {
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %v: %w", total, err)
		}
		time.Sleep(step)
	}
}

// CheckFor calls f every step until it returns nil, and fails the test with
// f's last error if that does not happen within total (nats-server's
// checkFor).
func CheckFor(t testing.TB, total, step time.Duration, f func() error) {
	t.Helper()
	if err := Wait(total, step, f); err != nil {
		t.Fatal(err)
	}
}

// NoGoroutines waits up to total for every goroutine whose stack mentions
// one of match (say "riptrace/dap.(*session)") to end, and returns an error
// listing those left, naming them what. Call it after the tests, from
// TestMain (see agenttest.Main), or from a test's cleanup.
func NoGoroutines(total time.Duration, what string, match ...string) error {
	var left []string
	err := Wait(total, 20*time.Millisecond, func() error {
		left = goroutines(match)
		if len(left) > 0 {
			return fmt.Errorf("%d %s still running", len(left), what)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w:\n%s", err, strings.Join(left, "\n\n"))
	}
	return nil
}

// goroutines returns the stacks of the goroutines that mention any of match.
func goroutines(match []string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if upstreamLeak(g) {
			continue
		}
		for _, m := range match {
			if strings.Contains(g, m) {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

// upstreamLeak reports whether the goroutine g is one nats.go v1.55.0 leaks
// itself, whatever its caller does: the first PublishMsgAsync of a
// JetStream context starts resetPendingAcksOnReconnect, which reads the
// publisher's status channel only once it runs; a CleanupPublisher
// (fleet.Outbox's, at its end) before that sets the channel to nil, and
// the goroutine then waits on the nil channel forever. One per Outbox that
// stops right after its first publish; harmless, and not ours to end.
func upstreamLeak(g string) bool {
	return strings.Contains(g, "[chan receive (nil chan)") && strings.Contains(g, "jetstream.(*jetStream).resetPendingAcksOnReconnect")
}
