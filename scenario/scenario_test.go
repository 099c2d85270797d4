package scenario_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// load reads an example scenario and points its services at the demo
// services built for this test, as `make build` would have for the CLI.
func load(t *testing.T, name string) *scenario.Scenario {
	t.Helper()
	s, err := scenario.Load(filepath.Join("..", "examples", "scenarios", name))
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Services {
		s.Services[i].Command = agenttest.BuildTarget(t, filepath.Join("..", "demo", s.Services[i].Name))
	}
	return s
}

// run runs s and fails the test if the run itself could not happen. It
// returns the result and the log of the services and the embedded agent.
func run(t *testing.T, s *scenario.Scenario) (*scenario.Result, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := scenario.Run(ctx, s, scenario.Options{Log: &log})
	if err != nil {
		t.Fatalf("running %s: %v\n%s", s.Name, err, log.String())
	}
	var out bytes.Buffer
	res.Summary(&out)
	t.Log("\n" + out.String())
	return res, log.String()
}

// TestCheckoutPasses runs the passing example on the real demo services
// with the embedded server and agent.
func TestCheckoutPasses(t *testing.T) {
	res, log := run(t, load(t, "checkout.yaml"))
	res.Report(t)
	if !res.OK() || len(res.Outcomes) != 6 || res.Hits != 12 {
		t.Errorf("want 6 expectations holding over 12 hits, got OK=%v, %d outcomes, %d hits; the services and the agent said:\n%s", res.OK(), len(res.Outcomes), res.Hits, log)
	}
}

// failing are the failing examples, one per kind of expectation, and what
// each failure must say.
var failing = map[string][]string{
	"count":  {"4 hits, want == 5"},
	"where":  {"1 of 4 hits broke it", "req.Amount=809.1", "req.Amount < 100 is false"},
	"never":  {"hit 4 times", `masked="**** 0341"`},
	"order":  {"out of order or incomplete in 4 of 4 requests", "price came before checkout"},
	"within": {"broken in 4 of 4 requests", "after price, want within 1µs"},
}

// failureText is an outcome's detail and its culprits' notes and values.
func failureText(o scenario.Outcome) string {
	var text strings.Builder
	text.WriteString(o.Detail)
	for _, c := range o.Culprits {
		text.WriteString("\n" + c.Note)
		for _, v := range c.Values {
			text.WriteString(" " + v.Name + "=" + v.Value)
		}
	}
	return text.String()
}

// reportT records what Result.Report says to a *testing.T.
type reportT struct{ errors []string }

func (r *reportT) Helper() {}
func (r *reportT) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// culpritLine is a culprit as Report shows it: the hit's place in the
// timeline (its number, tracepoint, line, host, pid, time), then its values.
var culpritLine = regexp.MustCompile(`\n    #\d+(\.\d+)? (checkout|price|charge) (gateway|orders|payments)/main\.go:\d+ \S+ pid \d+ \d\d:\d\d:\d\d\.\d{6} `)

// TestCheckoutFails runs the failing examples on the demo services: each
// expectation fails, and says why with the hits and values that broke it,
// in a test's failure as in the summary.
func TestCheckoutFails(t *testing.T) {
	for kind, want := range failing {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			res, _ := run(t, load(t, "checkout-fails-"+kind+".yaml"))
			if res.OK() || len(res.Outcomes) != 1 || res.Outcomes[0].OK || res.Outcomes[0].Kind != kind {
				t.Fatalf("want one %s expectation failing, got %+v", kind, res.Outcomes)
			}
			text := failureText(res.Outcomes[0])
			for _, w := range want {
				if !strings.Contains(text, w) {
					t.Errorf("the failure does not say %q:\n%s", w, text)
				}
			}
			var rt reportT
			res.Report(&rt)
			if len(rt.errors) != 1 || !strings.HasPrefix(rt.errors[0], "✗ "+kind+": ") || !strings.Contains(rt.errors[0], res.Outcomes[0].Detail) {
				t.Errorf("Report: want one failure naming the expectation and its detail, got %q", rt.errors)
			}
			if kind != "count" && !culpritLine.MatchString(rt.errors[0]) {
				t.Errorf("Report: the failure does not show the hits that broke it in timeline order:\n%s", rt.errors[0])
			}
		})
	}
}

// TestNeverReady starts a service that never becomes ready and has a
// child of its own: the run fails saying so, and neither is left running.
func TestNeverReady(t *testing.T) {
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	s := &scenario.Scenario{
		Name: "never-ready",
		Dir:  dir,
		Services: []scenario.Service{{
			Name:    "stuck",
			Command: "sh",
			// The shell and its child write their pids, then wait forever.
			Args:  []string{"-c", "sleep 1000 & echo $$ $! > " + pids + "; echo starting; wait"},
			Ready: scenario.Probe{Log: `^READY`, Timeout: 500 * time.Millisecond},
		}},
	}
	_, err := scenario.Run(context.Background(), s, scenario.Options{})
	if err == nil || !strings.Contains(err.Error(), "service stuck was not ready within 500ms") || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("want an error saying stuck was not ready, with its output; got %v", err)
	}
	b, rerr := os.ReadFile(pids)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		agenttest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if alive(pid) {
				return errors.New("pid " + f + " is still running")
			}
			return nil
		})
	}
}

// alive reports whether pid runs (a zombie waiting for its reaper does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// TestGoAPI drives the services from Go: every kind of step, then
// expectations checked on the same running services.
func TestGoAPI(t *testing.T) {
	s := load(t, "checkout.yaml")
	s.Steps, s.Expect = nil, nil
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := scenario.Start(ctx, s, scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	marker := filepath.Join(t.TempDir(), "ran")
	checkout := func(customer string) scenario.Step {
		return scenario.Step{HTTP: &scenario.HTTPStep{URL: "http://${gateway.addr}/checkout", Status: 200,
			Body: `{"customer":"` + customer + `","items":[{"sku":"pen","qty":1}]}`}}
	}
	err = r.Do(ctx,
		scenario.Step{Shell: "echo ${gateway.pid} > " + marker},
		scenario.Step{Repeat: 3, Parallel: []scenario.Step{checkout("alice"), checkout("bob")}},
		scenario.Step{Until: &scenario.Until{Hits: "checkout", Count: 6}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != r.Vars()["gateway.pid"] {
		t.Errorf("the shell step wrote %q (%v), want the gateway's pid %s", b, err, r.Vars()["gateway.pid"])
	}
	res := r.Check(ctx,
		scenario.Expectation{Hits: "checkout", Count: "== 6"},
		scenario.Expectation{Hits: "charge", Where: `req.Customer in ["alice", "bob"] && req.Amount == 1.75`},
		scenario.Expectation{Never: "refuse"},
		scenario.Expectation{Order: []string{"price", "charge", "checkout"}, By: map[string]string{"price": "o.ID", "charge": "req.OrderID", "*": "o.ID"}},
	)
	res.Report(t)
	// A step that fails says which and why.
	err = r.Do(ctx, scenario.Step{Name: "unknown sku", HTTP: &scenario.HTTPStep{URL: "http://${gateway.addr}/checkout", Status: 200,
		Body: `{"customer":"alice","items":[{"sku":"nothing","qty":1}]}`}})
	if err == nil || !strings.Contains(err.Error(), "step 1 (unknown sku)") || !strings.Contains(err.Error(), "answered 400") {
		t.Errorf("want the failed step named with its status, got %v", err)
	}
	// A predicate over a value the hit does not carry fails and says so;
	// the failed request reached the checkout line too.
	res = r.Check(ctx, scenario.Expectation{Hits: "charge", Where: "req.Nothing > 0"}, scenario.Expectation{Hits: "checkout", Count: "== 7"})
	if res.OK() || !strings.Contains(res.Outcomes[0].Culprits[0].Note, "req.Nothing was not captured") {
		t.Errorf("want req.Nothing reported as not captured, got %+v", res.Outcomes[0])
	}
	if !res.Outcomes[1].OK {
		t.Errorf("want 7 checkouts, got %s", res.Outcomes[1].Detail)
	}
}

// TestServiceCrashes has a service exit in the middle of the run: the run
// fails at once and says which service exited, and how.
func TestServiceCrashes(t *testing.T) {
	s := &scenario.Scenario{
		Name: "crash",
		Dir:  t.TempDir(),
		Services: []scenario.Service{{
			Name:    "crashy",
			Command: "sh",
			Args:    []string{"-c", "echo READY; read line; echo dying; exit 3"},
			Ready:   scenario.Probe{Log: `^READY`},
		}},
		// The service waits on its stdin, which the runner does not
		// give it: it reads end of file at once and exits. Its exit ends
		// the step under way, long before the step's own timeout or the
		// test's.
		Steps: []scenario.Step{{Shell: "sleep 600", Timeout: 10 * time.Minute}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := scenario.Run(ctx, s, scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "service crashy exited during the run (exit status 3)") || !strings.Contains(res.Errors[0], "dying") {
		t.Errorf("want the run failed by crashy's exit, with its last lines; got %q", res.Errors)
	}
}

// TestJoinFleet runs the passing example against a running fleet (a
// server as riptrace server runs it, which answers the agents' clock
// questions, and an agent of its own) instead of an embedded one.
func TestJoinFleet(t *testing.T) {
	srv, err := fleet.StartServer(context.Background(), fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s := load(t, "checkout.yaml")
	agenttest.RunAgent(t, srv.Server, agent.Config{Host: "joined", Processes: []string{"payments-*", "orders-*", "gateway-*"}}, nil)
	s.Fleet = &scenario.Fleet{NATS: srv.ClientURL()}
	res, _ := run(t, s)
	res.Report(t)
	if !res.OK() || res.Hits != 12 {
		t.Errorf("want every expectation to hold over 12 hits, got OK=%v over %d", res.OK(), res.Hits)
	}
}

// TestAgentStops joins a fleet whose agent stops while a step runs: the
// run ends the step, fails saying the agent went, and stops its services.
func TestAgentStops(t *testing.T) {
	srv, err := fleet.StartServer(context.Background(), fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s := load(t, "checkout.yaml")
	host := "stopping-" + strconv.Itoa(os.Getpid())
	stop := agenttest.RunAgent(t, srv.Server, agent.Config{Host: host, Processes: []string{"payments-*", "orders-*", "gateway-*"}}, nil)
	s.Fleet = &scenario.Fleet{NATS: srv.ClientURL()}
	pids := filepath.Join(t.TempDir(), "pids")
	s.Steps = append(s.Steps, scenario.Step{Shell: "echo ${payments.pid} ${orders.pid} ${gateway.pid} > " + pids + ".tmp && mv " + pids + ".tmp " + pids + " && sleep 600", Timeout: 10 * time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	done := make(chan *scenario.Result, 1)
	go func() {
		res, err := scenario.Run(ctx, s, scenario.Options{})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	var started []string
	agenttest.CheckFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
		b, err := os.ReadFile(pids)
		started = strings.Fields(string(b))
		return err
	})
	stop()
	res := <-done
	if res == nil {
		return
	}
	if res.OK() || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "lost the fleet: the agent on host "+host+" has been gone since") || !strings.Contains(res.Errors[0], "it withdrew its heartbeat") {
		t.Errorf("want the run failed by the agent's going, got %q", res.Errors)
	}
	for _, f := range started {
		pid, _ := strconv.Atoi(f)
		if alive(pid) {
			t.Errorf("pid %d, a service of the run, still runs after it", pid)
		}
	}
}

// TestNATSRestarts restarts the fleet's NATS server, on its port and with
// its store, between two steps: an outage within the grace loses nothing,
// and the run goes on to judge the hits of both sides of it.
func TestNATSRestarts(t *testing.T) {
	data := t.TempDir()
	srv, err := fleet.StartServer(context.Background(), fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	url := srv.ClientURL()
	s := load(t, "checkout.yaml")
	agenttest.RunAgent(t, srv.Server, agent.Config{Host: "restarts-" + strconv.Itoa(os.Getpid()), Processes: []string{"payments-*", "orders-*", "gateway-*"}}, nil)
	s.Fleet = &scenario.Fleet{NATS: url}
	dir := t.TempDir()
	waiting, resume := filepath.Join(dir, "waiting"), filepath.Join(dir, "resume")
	checkout := scenario.Step{HTTP: &scenario.HTTPStep{URL: "http://${gateway.addr}/checkout", Status: 200, Body: `{"customer":"bob","items":[{"sku":"mug","qty":1}]}`}}
	s.Steps = []scenario.Step{
		checkout,
		{Until: &scenario.Until{Hits: "checkout", Count: 1}},
		{Shell: "touch " + waiting + "; while [ ! -e " + resume + " ]; do sleep 0.05; done", Timeout: 5 * time.Minute},
		checkout,
		{Until: &scenario.Until{Hits: "checkout", Count: 2}, Timeout: 2 * time.Minute},
	}
	s.Expect = []scenario.Expectation{{Hits: "checkout", Count: "== 2"}, {Hits: "charge", Count: "== 2"}}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	done := make(chan *scenario.Result, 1)
	go func() {
		res, err := scenario.Run(ctx, s, scenario.Options{NATSGrace: time.Minute})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	agenttest.CheckFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
		_, err := os.Stat(waiting)
		return err
	})
	srv.Shutdown()
	srv.WaitForShutdown()
	if srv, err = fleet.StartServer(context.Background(), fleet.ServerConfig{Listen: strings.TrimPrefix(url, "nats://"), DataDir: data}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(resume, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res == nil {
		return
	}
	res.Report(t)
}
