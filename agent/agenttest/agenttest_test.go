package agenttest_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

const loopDir = "../testdata/targets/loop"

func TestMain(m *testing.M) {
	m.Run()
	if err := agenttest.RemoveBuilds(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

func TestLoopTarget(t *testing.T) {
	src := filepath.Join(loopDir, "main.go")
	lines := map[string]int{}
	for _, name := range []string{"process", "loop", "nocode"} {
		lines[name] = agenttest.MarkerLine(t, src, name)
	}
	if lines["nocode"] != lines["process"]-1 {
		t.Errorf("@trace(nocode) on line %d, want it just above @trace(process) on line %d", lines["nocode"], lines["process"])
	}

	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"optimized", nil},
		{"noopt", []string{agenttest.NoOpt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := agenttest.BuildTarget(t, loopDir, tc.flags...)
			if again := agenttest.BuildTarget(t, loopDir, tc.flags...); again != bin {
				t.Errorf("second build of the same target gave %s, want the shared %s", again, bin)
			}

			p := agenttest.Start(t, bin)
			if p.Pid <= 0 || p.Addr != "" {
				t.Errorf("READY line gave pid %d, addr %q; want a pid and no addr", p.Pid, p.Addr)
			}
			if !p.Alive() {
				t.Fatalf("pid %d not alive after READY", p.Pid)
			}
			p.WaitOutput(t, "ALIVE n=", 10*time.Second)
			if err := p.Stop(); err != nil {
				t.Errorf("stopping loop: %v", err)
			}
			if p.Alive() {
				t.Errorf("pid %d alive after Stop", p.Pid)
			}
		})
	}
}

func TestLoopExitAfter(t *testing.T) {
	t.Parallel()
	p := agenttest.Start(t, agenttest.BuildTarget(t, loopDir), "-exit-after", "200ms", "-every", "1ms")
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p.Alive() {
			return errors.New("loop still alive after -exit-after 200ms")
		}
		return nil
	})
	if err := p.Wait(time.Second); err != nil {
		t.Errorf("loop with -exit-after: %v, want exit status 0", err)
	}
	p.WaitOutput(t, "EXIT n=", time.Second)
}

func TestBuildTargetSharesParallelBuilds(t *testing.T) {
	const flags = "-gcflags=all=-l" // built by no other test, so the builds here race
	paths := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for range cap(paths) {
			t.Run("build", func(t *testing.T) {
				t.Parallel()
				paths <- agenttest.BuildTarget(t, loopDir, flags)
			})
		}
	})
	close(paths)
	first := <-paths
	for p := range paths {
		if p != first {
			t.Errorf("parallel builds gave %s and %s, want one shared binary", first, p)
		}
	}
}
