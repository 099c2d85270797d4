package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// startCapped is start for a riptrace command run by root with only caps
// (lower-case names, as setpriv takes them) in its bounding set, as the
// deploy/ units and manifests run the agent.
func startCapped(t *testing.T, caps []string, args ...string) *bg {
	t.Helper()
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(c)
	}
	return startUnder(t, []string{"setpriv", "--bounding-set", set}, args...)
}

// TestDeployCapabilities: an agent holding only the capabilities deploy/
// grants traces a process of another user (as a container's service runs),
// and one holding SYS_PTRACE alone says what it lacks.
func TestDeployCapabilities(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs the agent as root with a reduced capability set")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	src := loopSource(t)
	loc := fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "process"))
	// The target runs as nobody, from a directory nobody may enter.
	dir, err := os.MkdirTemp("", "riptrace-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe := agenttest.AliasAt(t, agenttest.BuildTarget(t, loopDir), filepath.Join(dir, exeName("caps-loop")))
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := agenttest.Start(t, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", exe)
	url := startServer(t)

	// SYS_PTRACE alone: refused, and the agent says what it could not do.
	startCapped(t, []string{"SYS_PTRACE"}, "agent", "--nats", url, "--host", "caps-ptrace-only", "--processes", filepath.Base(exe))
	tr := start(t, "trace", "--nats", url, "--hosts", "caps-ptrace-only", "--processes", filepath.Base(exe), loc)
	tr.await(t, stateTimeout, "the attach refused", func(_, stderr string) bool {
		return strings.Contains(stderr, "auxv: permission denied")
	})
	tr.stop()

	// The capabilities deploy/ grants: hits, through Delve, and through auto,
	// which takes eBPF where the kernel grants these capabilities uprobes
	// and falls back to Delve where it does not (6.18 here asks for
	// CAP_SYS_ADMIN too).
	for _, backend := range []string{"delve", "auto"} {
		host := "caps-" + backend
		startCapped(t, shippedCaps, "agent", "--nats", url, "--host", host, "--processes", filepath.Base(exe), "--backend", backend)
		r := run(t, cmdTimeout, "trace", "--nats", url, "--hosts", host, "--processes", filepath.Base(exe), "--json", "--count", "2", loc)
		hits := decodeHits(t, r.stdout)
		if r.code != 0 || len(hits) != 2 {
			t.Fatalf("riptrace trace against a %s agent with %v: exit %d, %d hits, want 2\n%s", backend, shippedCaps, r.code, len(hits), r.stderr)
		}
		for _, h := range hits {
			if h.Pid != target.Pid {
				t.Errorf("hit from pid %d, want the target's %d", h.Pid, target.Pid)
			}
		}
		// The agent detaches once the trace ends; a process has one
		// tracer at a time, so the next agent waits for that.
		testsupport.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			if pid := agenttest.TracerPid(target.Pid); pid != 0 {
				return fmt.Errorf("the target is still traced by pid %d after the %s agent's trace ended", pid, backend)
			}
			return nil
		})
	}
	if !target.Alive() {
		t.Errorf("the target died:\n%s", target.Stderr())
	}
}
