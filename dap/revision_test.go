package dap_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	godap "github.com/google/go-dap"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/source/sourcetest"
)

// revMain is a target at two commits: {{above}} is where commit B inserts
// lines above the traced one.
const revMain = `package main

import (
	"fmt"
	"os"
	"time"
)
{{above}}
//go:noinline
func work(n int) int {
	m := n * 3
	m += n //@trace(work)
	return m
}

func main() {
	fmt.Printf("READY pid=%d\n", os.Getpid())
	for n := 0; ; n++ {
		work(n)
		time.Sleep(5 * time.Millisecond)
	}
}
`

// TestRevisionMapping: the fleet runs commit A while the checkout is at B,
// which has two more lines above the traced one. The breakpoint set on the
// checkout's line traces A's line, and hits show at the checkout's line.
func TestRevisionMapping(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	repo := sourcetest.Init(t)
	sourcetest.Write(t, repo, "go.mod", "module example.com/revs\n\ngo 1.26\n")
	sourcetest.Commit(t, repo, "A", map[string]string{"main.go": strings.Replace(revMain, "{{above}}", "", 1)})
	bin := filepath.Join(t.TempDir(), "revs")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	build.Dir = repo
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=true", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building commit A: %v\n%s", err, out)
	}
	remoteLine := agenttest.MarkerLine(t, filepath.Join(repo, "main.go"), "work")
	sourcetest.Commit(t, repo, "B", map[string]string{"main.go": strings.Replace(revMain, "{{above}}", "\n// Added in B,\n// above the traced line.", 1)})
	localSrc := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, localSrc, "work")
	if localLine != remoteLine+2 {
		t.Fatalf("commit B moved the traced line from %d to %d, want 2 lines down", remoteLine, localLine)
	}

	exe := f.exe("revs")
	agenttest.Start(t, agenttest.Alias(t, bin, exe)) // before the agent: cleanups detach first
	f.startAgent(f.host, exe)
	c := f.session()
	f.attach(c, map[string]any{"processes": []string{exe}, "cwd": repo})

	bps := setBreakpoints(t, c, localSrc, godap.SourceBreakpoint{Line: localLine})
	c.AwaitBreakpointEvent(t, "installed", func(bp *godap.Breakpoint) bool { return bp.Id == bps[0].Id && bp.Verified })
	e := c.HitEvents(t, 1)[0]
	h := hitOf(t, e)
	if h.Line != remoteLine {
		t.Errorf("the process hit line %d, want commit A's line %d", h.Line, remoteLine)
	}
	if e.Body.Source == nil || e.Body.Source.Path != localSrc || e.Body.Line != localLine {
		t.Errorf("the hit shows at %+v:%d, want the checkout's %s:%d", e.Body.Source, e.Body.Line, localSrc, localLine)
	}
	c.Send(t, "disconnect", nil)
	c.ExpectDisconnectResponse(t)
}
