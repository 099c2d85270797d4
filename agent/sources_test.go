package agent_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// TestSourcesOutliveTheProcess reads an executable's build info, source
// files and a file's fingerprint after the process that named it has
// exited: the agent reads them through the file it opened, so the answer
// is the executable's, not "no such file" for a pid gone (which the caches
// would keep and give every later process of that binary).
func TestSourcesOutliveTheProcess(t *testing.T) {
	bin := agenttest.BuildTarget(t, loopDir)
	p := agenttest.Start(t, bin)
	exit := func() {
		if err := p.Cmd.Process.Kill(); err != nil {
			t.Fatalf("killing the target: %v", err)
		}
		agenttest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/exe", p.Pid)); err == nil {
				return fmt.Errorf("/proc/%d/exe is still there", p.Pid)
			}
			return nil
		})
	}
	line := agenttest.MarkerLine(t, loopSrc, "process")
	files, fp, err := agent.ReadExeAfter(p.Pid, exit, fleet.Location{Path: "loop/main.go", Line: line})
	if err != nil {
		t.Fatalf("reading the executable of a process that exited meanwhile: %v", err)
	}
	if len(files) == 0 {
		t.Errorf("no source files read")
	}
	if fp == nil || fp.Error != "" || !slices.Contains(fp.Lines, line) {
		t.Errorf("want the fingerprint of loop/main.go with line %d, got %+v", line, fp)
	}
}
