package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// nobody is the uid (and gid) the other user's target runs as.
const nobody = 65534

// A target of a uid outside the allow-list is neither offered, nor
// attached, nor traced: the tracepoint's status and an explicit attach say
// which rule refused it. The allowed target beside it is traced.
func TestAllowListUIDs(t *testing.T) {
	t.Parallel()
	const source = "/etc/riptrace/agent.yaml:9"
	h := newHarnessWith(t, agent.Config{UIDs: []int{os.Getuid()}, RuleSources: map[string]string{"uids": source}})
	if os.Getuid() == nobody {
		t.Skip("the test runs as nobody: no other uid to start a target as")
	}
	mine := h.start()
	bin := reachableCopy(t, h.bin)
	other := agenttest.StartAs(t, &syscall.Credential{Uid: nobody, Gid: nobody}, bin)

	spec := h.spec("allow-uids", "process")
	spec.Selector.Processes = []string{h.exe}
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(mine.Pid))
	st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == other.Pid && ev.State == fleet.StateError })
	want := fmt.Sprintf("pid %d (uid %d, exe %s) is outside the attach allow-list: attach.uids [%d] in %s", other.Pid, nobody, bin, os.Getuid(), source)
	t.Logf("status: %s", st.Message)
	if !strings.Contains(st.Message, want) {
		t.Fatalf("status of the other user's target:\n%s\nwant it to contain\n%s", st.Message, want)
	}
	for _, hit := range h.hits(spec.ID, 3) {
		if hit.Pid != mine.Pid {
			t.Fatalf("a hit from pid %d, want only the allowed pid %d", hit.Pid, mine.Pid)
		}
	}

	_, err := h.c.Attach(context.Background(), h.host, other.Pid)
	if e := fleet.AsError(err); e == nil || e.Code != fleet.CodeNotManaged || !strings.Contains(e.Message, want) {
		t.Fatalf("attaching to the other user's target: %v, want %s containing %q", err, fleet.CodeNotManaged, want)
	}

	p, err := h.c.Profile(context.Background(), h.host)
	if err != nil {
		t.Fatal(err)
	}
	for _, proc := range p.Processes {
		if proc.Pid == other.Pid {
			t.Fatalf("the profile offers pid %d, which the allow-list refuses", other.Pid)
		}
	}
	if tracer := agenttest.TracerPid(other.Pid); tracer != 0 {
		t.Fatalf("the other user's target is traced by pid %d", tracer)
	}
	stillRunning(t, other)
}

// The process globs of the allow-list refuse an attach by name, and say
// so; a tracepoint that selects processes outside them leaves those to other
// agents, without a status from this one.
func TestAllowListProcesses(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, agent.Config{})
	mine := h.start()
	// Another executable name than the harness admits.
	p := agenttest.Start(t, agenttest.Alias(t, h.bin, h.exe+"-other"))
	spec := h.spec("allow-globs", "process")
	spec.Selector.Processes = []string{h.exe + "*"}
	r, err := h.c.CreateTracepoint(context.Background(), h.host, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Placements) != 1 || r.Placements[0].Pid != mine.Pid || r.Placements[0].Error != nil {
		t.Fatalf("placements %+v, want pid %d alone, installed", r.Placements, mine.Pid)
	}
	_, err = h.c.Attach(context.Background(), h.host, p.Pid)
	t.Logf("attach: %v", err)
	want := fmt.Sprintf("pid %d (uid %d, exe ", p.Pid, os.Getuid())
	if e := fleet.AsError(err); e == nil || e.Code != fleet.CodeNotManaged || !strings.Contains(e.Message, want) ||
		!strings.Contains(e.Message, fmt.Sprintf("is outside the attach allow-list: --processes [%q]", h.exe)) {
		t.Fatalf("attaching to a process the globs leave out: %v", err)
	}
}

// reachableCopy links bin into a directory every user may enter, under
// the same base name.
func reachableCopy(t *testing.T, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "riptrace-allow-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(bin))
	if err := os.Link(bin, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}
