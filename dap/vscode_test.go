package dap_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestVSCodeDebugClient drives the built `riptrace dap` over stdio with
// Microsoft's DebugClient (@vscode/debugadapter-testsupport), a client we
// did not write, through attach → setBreakpoints → a real hit → disconnect
// (dap/vscodetest/attach.test.mjs), then checks the fleet forgot the
// session's tracepoint and the target runs on.
func TestVSCodeDebugClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: this test needs Node.js 20 or later and `make deps` (npm ci in dap/vscodetest)")
	}
	dir, _ := filepath.Abs("vscodetest")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@vscode", "debugadapter-testsupport")); err != nil {
		t.Fatalf("%s/node_modules lacks @vscode/debugadapter-testsupport: run `make deps` (npm ci in dap/vscodetest)", dir)
	}
	bin := agenttest.BuildTarget(t, "../cmd/riptrace")

	f := newFleet(t)
	exe := f.exe("vscode")
	f.startAgent(f.host, exe)
	p := f.startTarget(exe)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "attach.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"RIPTRACE_BIN="+bin,
		"RIPTRACE_NATS_URL="+f.srv.ClientURL(),
		"RIPTRACE_SOURCE="+loopSrc,
		"RIPTRACE_LINE="+strconv.Itoa(agenttest.MarkerLine(t, loopSrc, "process")),
		"RIPTRACE_PROCESS="+exe,
		"RIPTRACE_CWD="+repoRoot,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test attach.test.mjs: %v\n%s", err, out)
	}

	if got := f.declared(); len(got) != 0 {
		t.Errorf("declared tracepoints after the DebugClient disconnected = %v, want none", got)
	}
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		att, err := f.attached(f.host, p.Pid)
		if err == nil && att {
			err = fmt.Errorf("still attached to %d after disconnect", p.Pid)
		}
		return err
	})
	stillRunning(t, p)
}
