package scenario_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario"
	"github.com/riptrace/riptrace/scenario/recording"
)

// freeAddr is a local address nothing listens on (as far as anyone can
// know: the port was free a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestProbesNeverReady starts services whose probes never pass, and one
// that exits before its probe: each run fails naming the service, what it
// waited for and what to do, and no process of theirs is left.
func TestProbesNeverReady(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	t.Cleanup(failing.Close)
	nobody := freeAddr(t)
	for _, tc := range []struct {
		name  string
		ready scenario.Probe
		sh    string
		want  string
	}{
		{"http refused", scenario.Probe{HTTP: "http://" + nobody + "/health"}, "exec sleep 1000",
			"service svc was not ready within 300ms: it never answered GET http://" + nobody + "/health. Check its command and probe, or raise ready.timeout"},
		{"http 503", scenario.Probe{HTTP: failing.URL}, "exec sleep 1000",
			"service svc was not ready within 300ms: it never answered GET " + failing.URL},
		{"tcp", scenario.Probe{TCP: nobody}, "exec sleep 1000",
			"service svc was not ready within 300ms: it never accepted a connection on " + nobody},
		{"exits first", scenario.Probe{Log: "^READY"}, "echo boom; exit 4",
			"service svc exited (exit status 4) before it printed a line matching \"^READY\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pid := filepath.Join(dir, "pid")
			tc.ready.Timeout = 300 * time.Millisecond
			s := &scenario.Scenario{Name: "probe", Dir: dir, Services: []scenario.Service{{
				Name: "svc", Command: "sh", Args: []string{"-c", "echo $$ > " + pid + "; " + tc.sh}, Ready: tc.ready,
			}}}
			_, err := scenario.Run(context.Background(), s, scenario.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error saying %q, got %v", tc.want, err)
			}
			b, err := os.ReadFile(pid)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			agenttest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if alive(p) {
					return errors.New("the service's process " + strconv.Itoa(p) + " still runs")
				}
				return nil
			})
		})
	}
}

// TestServiceAndTracepointFields runs the demo services with every kind
// of probe, a service's env and dir, and tracepoints by function, with a
// condition, a log message, captured expressions and a hit limit; then
// steps that fail, a shell command and a wait, each saying why.
func TestServiceAndTracepointFields(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	payments, orders := freeAddr(t), freeAddr(t)
	bin := func(name string) string { return agenttest.BuildTarget(t, filepath.Join(root, "demo", name)) }
	dir := t.TempDir()
	s := &scenario.Scenario{
		Name: "fields",
		Dir:  root,
		Services: []scenario.Service{
			{Name: "payments", Command: bin("payments"), Args: []string{"-listen", payments}, Ready: scenario.Probe{HTTP: "http://" + payments + "/"}},
			{Name: "orders", Command: bin("orders"), Args: []string{"-listen", orders, "-payments", "http://" + payments}, Ready: scenario.Probe{TCP: orders}},
			{Name: "gateway", Command: bin("gateway"), Args: []string{"-orders", "http://" + orders}, Ready: scenario.Probe{Log: `READY pid=\d+ addr=(?P<addr>\S+)`}},
			{Name: "env", Command: "sh", Args: []string{"-c", `echo "READY $GREETING $(pwd)"; exec sleep 1000`}, Env: map[string]string{"GREETING": "hello"}, Dir: dir,
				Ready: scenario.Probe{Log: `^READY (?P<greeting>\S+) (?P<dir>\S+)`}},
		},
		Tracepoints: []scenario.Tracepoint{
			{Name: "charge", Service: "payments", Function: "demo/payments.charge", Capture: []string{"req.Customer"}, NoLocals: true},
			{Name: "big", Service: "payments", At: "demo/payments/main.go:@charge", Condition: "req.Amount > 100", Log: "big charge of {req.Customer}"},
			{Name: "once", Service: "gateway", At: "demo/gateway/main.go:@checkout", MaxHits: 1},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := scenario.Start(ctx, s, scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if v := r.Vars(); v["env.greeting"] != "hello" || v["env.dir"] != dir {
		t.Errorf("the env service saw GREETING=%q in %q, want hello in %s", v["env.greeting"], v["env.dir"], dir)
	}
	checkout := func(customer, sku string) scenario.Step {
		return scenario.Step{HTTP: &scenario.HTTPStep{URL: "http://${gateway.addr}/checkout", Body: `{"customer":"` + customer + `","items":[{"sku":"` + sku + `","qty":1}]}`}}
	}
	if err := r.Do(ctx, checkout("alice", "pen"), checkout("bob", "laptop"), checkout("alice", "mug"),
		scenario.Step{Until: &scenario.Until{Hits: "charge", Count: 3}}); err != nil {
		t.Fatal(err)
	}
	r.Check(ctx,
		scenario.Expectation{Hits: "charge", Count: "== 3"},
		scenario.Expectation{Hits: "charge", Where: `req.Customer in ["alice", "bob"]`},
		scenario.Expectation{Hits: "big", Count: "== 1"},
		scenario.Expectation{Hits: "big", Where: `req.Customer == "bob" && req.Amount > 100`},
		scenario.Expectation{Hits: "once", Count: "== 1"},
	).Report(t)
	var rec bytes.Buffer
	if err := r.Record(&rec, nil); err != nil {
		t.Fatal(err)
	}
	got, err := recording.Read(&rec, "fields")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got.Messages {
		switch h := m.Hit; {
		case h == nil:
		case h.Tracepoint == "charge" && (len(h.Exprs) != 1 || h.Exprs[0].Name != "req.Customer" || len(h.Locals) != 0):
			t.Errorf("a charge captured exprs %+v and %d locals, want req.Customer and no locals", h.Exprs, len(h.Locals))
		case h.Tracepoint == "big" && h.Message != "big charge of bob":
			t.Errorf("a big charge logged %q, want %q", h.Message, "big charge of bob")
		}
	}

	// An HTTP step's method, headers and URL, with the run's variables.
	asked := make(chan *http.Request, 1)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		asked <- req.Clone(context.Background())
		w.WriteHeader(http.StatusAccepted)
	}))
	defer echo.Close()
	if err := r.Do(ctx, scenario.Step{HTTP: &scenario.HTTPStep{Method: "PUT", URL: echo.URL + "/say/${env.greeting}", Headers: map[string]string{"X-Greeting": "${env.greeting}"}, Status: 202}}); err != nil {
		t.Fatal(err)
	}
	if req := <-asked; req.Method != "PUT" || req.URL.Path != "/say/hello" || req.Header.Get("X-Greeting") != "hello" {
		t.Errorf("the step sent %s %s with X-Greeting %q, want PUT /say/hello with hello", req.Method, req.URL.Path, req.Header.Get("X-Greeting"))
	}

	// Steps that fail say which and why.
	for _, c := range []struct {
		step scenario.Step
		want string
	}{
		{scenario.Step{Name: "fails", Shell: "echo oops; exit 3"}, `step 1 (fails): sh "echo oops; exit 3": exit status 3; its output:` + "\noops"},
		{scenario.Step{Until: &scenario.Until{Hits: "once", Count: 2}, Timeout: 500 * time.Millisecond}, "step 1: waited 500ms for 2 hits of once, got 1: check that the steps before it reach that line, or raise the step's timeout"},
		{scenario.Step{Repeat: 3, Parallel: []scenario.Step{{Shell: "true"}, {Shell: "[ ${i} -lt 1 ]"}}}, `step 1, repeat 2 of 3, parallel 2: sh "[ 1 -lt 1 ]": exit status 1`},
		{scenario.Step{Shell: "sleep 600", Timeout: 300 * time.Millisecond}, `step 1: sh "sleep 600": signal: killed`},
	} {
		if err := r.Do(ctx, c.step); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want the step failing with %q, got %v", c.want, err)
		}
	}
}

// TestStepLeavesNothing runs a shell step that starts a child and ends:
// the child ends with it, as programs that outlive a step are services.
func TestStepLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "pid")
	s := &scenario.Scenario{Name: "leaves", Dir: dir, Steps: []scenario.Step{{Shell: "sleep 1000 & echo $! > " + pid}}}
	res, err := scenario.Run(context.Background(), s, scenario.Options{})
	if err != nil || !res.OK() {
		t.Fatalf("the run failed: %v %+v", err, res)
	}
	b, err := os.ReadFile(pid)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	agenttest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if alive(p) {
			return errors.New("the step's child " + strconv.Itoa(p) + " still runs")
		}
		return nil
	})
}

// TestFleetSelectors joins a fleet whose services run already, started by
// no scenario: a tracepoint that names no service applies where the
// fleet's hosts and processes select, and only there.
func TestFleetSelectors(t *testing.T) {
	srv, err := fleet.StartServer(context.Background(), fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	suffix := "-sel-" + strconv.Itoa(os.Getpid())
	exe := func(name string) string {
		return agenttest.Alias(t, agenttest.BuildTarget(t, filepath.Join(root, "demo", name)), name+suffix)
	}
	payments := agenttest.Start(t, exe("payments"))
	orders := agenttest.Start(t, exe("orders"), "-payments", "http://"+payments.Addr)
	gateway := agenttest.Start(t, exe("gateway"), "-orders", "http://"+orders.Addr)
	host := "selectors" + suffix
	agenttest.RunAgent(t, srv.Server, agent.Config{Host: host, Processes: []string{"*" + suffix}}, nil)
	s := &scenario.Scenario{
		Name:        "selectors",
		Dir:         root,
		Fleet:       &scenario.Fleet{NATS: srv.ClientURL(), Hosts: []string{host}, Processes: []string{"payments" + suffix}},
		Tracepoints: []scenario.Tracepoint{{Name: "charge", At: "demo/payments/main.go:@charge"}},
		Steps: []scenario.Step{
			{HTTP: &scenario.HTTPStep{URL: "http://" + gateway.Addr + "/checkout", Body: `{"customer":"bob","items":[{"sku":"mug","qty":1}]}`, Status: 200}},
			{Until: &scenario.Until{Hits: "charge", Count: 1}},
		},
		Expect: []scenario.Expectation{{Hits: "charge", Count: "== 1"}, {Hits: "charge", Where: `req.Customer == "bob"`}},
	}
	var rec bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := scenario.Run(ctx, s, scenario.Options{Record: &rec})
	if err != nil {
		t.Fatal(err)
	}
	res.Report(t)
	got, err := recording.Read(&rec, "selectors")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got.Messages {
		if h := m.Hit; h != nil && (h.Pid != payments.Pid || h.Host != host) {
			t.Errorf("a hit of %s pid %d, want only %s pid %d (payments)", h.Host, h.Pid, host, payments.Pid)
		}
	}
}
