package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/riptrace/riptrace/demo"
	"github.com/riptrace/riptrace/fleet"
)

// demoModule is the module the demo services are built in.
const demoModule = "github.com/riptrace/riptrace"

// demoHost is one agent of the demo and the services it manages.
type demoHost struct {
	name     string
	services []string
}

var demoHosts = []demoHost{
	{"shop-a", []string{"gateway", "orders"}},
	{"shop-b", []string{"payments"}},
}

// demoTracepoint is one tracepoint the demo declares.
type demoTracepoint struct {
	service, marker, log string
	group                string // the expression naming the request: its order id
}

var demoTracepoints = []demoTracepoint{
	{service: "gateway", marker: "checkout", group: "o.ID"},
	{service: "orders", marker: "price", group: "o.ID"},
	{service: "payments", marker: "charge", group: "req.OrderID", log: "charging {req.Customer} {req.Amount} {req.Currency}: approved={approved}"},
}

var demoCheckouts = []string{
	`{"customer":"alice","items":[{"sku":"book","qty":2},{"sku":"pen","qty":3}]}`,
	`{"customer":"bob","items":[{"sku":"lamp","qty":2},{"sku":"mug","qty":1}]}`,
	`{"customer":"mallory","items":[{"sku":"book","qty":1}]}`,
	`{"customer":"alice","items":[{"sku":"laptop","qty":1}]}`,
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--services DIR]", stderr)
	exe, _ := os.Executable()
	dir := fs.String("services", filepath.Dir(exe), "`DIR` holding the gateway, orders and payments binaries")
	verbose := fs.Bool("v", false, "show the agents' and services' logs")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("demo takes no arguments, got %q", pos)}
	}
	logw := io.Discard
	if *verbose {
		logw = stderr
	}
	d := &demoRun{stdout: stdout, stderr: stderr, logw: logw, dir: *dir}
	defer d.cleanup()
	return d.run(ctx)
}

type demoRun struct {
	stdout, stderr, logw io.Writer
	dir                  string
	undo                 []func()
	services             map[string]*demoService
}

func (d *demoRun) cleanup() {
	for i := len(d.undo) - 1; i >= 0; i-- {
		d.undo[i]()
	}
}

func (d *demoRun) step(format string, args ...any) {
	fmt.Fprintf(d.stdout, "==> "+format+"\n", args...)
}

func (d *demoRun) run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)

	// 1. The embedded server, on a free port with a throwaway store.
	data, err := os.MkdirTemp("", "riptrace-demo-")
	if err != nil {
		return err
	}
	d.undo = append(d.undo, func() { os.RemoveAll(data) })
	srv, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: data})
	if err != nil {
		return err
	}
	d.undo = append(d.undo, srv.Shutdown)
	d.step("embedded NATS server with JetStream at %s", srv.ClientURL())

	// 2. The services, each calling the next.
	d.services = make(map[string]*demoService)
	for _, s := range []struct{ name, flag, next string }{{"payments", "", ""}, {"orders", "-payments", "payments"}, {"gateway", "-orders", "orders"}} {
		var args []string
		if s.flag != "" {
			args = []string{s.flag, "http://" + d.services[s.next].addr}
		}
		bin := filepath.Join(d.dir, s.name)
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("demo service %s not found: build the services first with `make build` (or pass --services DIR)", bin)
		}
		svc, err := startProcess(ctx, bin, d.logw, "READY ", args...)
		if err != nil {
			return err
		}
		d.undo = append(d.undo, svc.stop)
		d.services[s.name] = svc
		d.step("started %-8s pid %d on %s", s.name, svc.cmd.Process.Pid, svc.addr)
	}

	// 3. Two agents with different host names, each managing its services.
	// They run as their own processes, as they would on real hosts: a
	// tracer must not be the parent that waits for its tracees.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var agents []*demoService
	for _, h := range demoHosts {
		args := []string{"agent", "--nats", srv.ClientURL(), "--host", h.name}
		for _, s := range h.services {
			args = append(args, "--processes", demoModule+"/demo/"+s)
		}
		a, err := startProcess(ctx, exe, d.logw, "", args...)
		if err != nil {
			return err
		}
		d.undo = append(d.undo, a.stop)
		agents = append(agents, a)
		d.step("agent %s (pid %d) manages %s", h.name, a.cmd.Process.Pid, strings.Join(h.services, ", "))
	}

	// 4. Tracepoints in every service, declared once for the whole fleet.
	client, err := fleet.Connect(ctx, srv.ClientURL(), fleet.ClientOptions{Name: "riptrace demo"})
	if err != nil {
		return err
	}
	d.undo = append(d.undo, client.Close)
	if err := waitForHosts(ctx, client, len(demoHosts)); err != nil {
		return err
	}
	var groups []string
	for _, tp := range demoTracepoints {
		if !slices.Contains(groups, tp.group) {
			groups = append(groups, tp.group)
		}
	}
	hits, err := client.Timeline(ctx, fleet.HitOptions{Replay: true}, fleet.TimelineOptions{Group: fleet.GroupBy(groups...)})
	if err != nil {
		return err
	}
	defer hits.Close()
	hits.Notice = func(s string) { fmt.Fprintf(d.stderr, "riptrace demo: timeline: %s\n", s) }
	var ids []string
	for _, tp := range demoTracepoints {
		path, line, err := demo.Marker(tp.service, tp.marker)
		if err != nil {
			return err
		}
		capture := fleet.DefaultCapture
		capture.StackDepth = 4
		capture.Exprs = []string{tp.group}
		spec := fleet.Spec{
			ID:       "demo-" + tp.marker,
			Location: fleet.Location{Module: demoModule, Path: path, Line: line},
			// The pid too: other copies of the demo services on this
			// machine (a test, another demo) are not ours to trace.
			Selector: fleet.Selector{
				Processes: []string{demoModule + "/demo/" + tp.service},
				Pids:      []int{d.services[tp.service].cmd.Process.Pid},
			},
			LogMessage: tp.log,
			Capture:    capture,
			Limits:     fleet.Limits{MaxHitsPerSecond: fleet.DefaultMaxHitsPerSecond, ExpiresAt: time.Now().Add(10 * time.Minute)},
			Owner:      owner("riptrace demo"),
		}
		if err := d.declareAndWait(ctx, client, &spec); err != nil {
			return err
		}
		ids = append(ids, spec.ID)
	}

	// 5. Traffic.
	gateway := "http://" + d.services["gateway"].addr + "/checkout"
	for _, body := range demoCheckouts {
		status, answer, err := post(ctx, gateway, body)
		if err != nil {
			return fmt.Errorf("sending a checkout: %w", err)
		}
		d.step("POST /checkout %s -> %d %s", body, status, answer)
	}

	// 6. The timeline: every hit in the order it ran, request by request.
	want := len(demoCheckouts) * len(demoTracepoints)
	var placed []fleet.Placed
	for n := 0; n < want; n++ {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		h, err := hits.Next(hctx)
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for hit %d of %d: %w", n+1, want, err)
		}
		placed = append(placed, h)
	}
	fmt.Fprintf(d.stdout, "\n==> timeline: %d hits across %d services on %d hosts, in the order they ran (server's clock ± each agent's clock bound), request by request\n\n", want, len(d.services), len(demoHosts))
	out := &timelineOut{w: d.stdout, grouped: true}
	for _, p := range blocks(placed) {
		out.print(&p)
	}
	fmt.Fprintln(d.stdout)

	// 7. Clean up: remove the tracepoints, stop the agents (they detach),
	// and check that every service kept running.
	for _, id := range ids {
		if err := client.Remove(ctx, id); err != nil {
			return err
		}
	}
	for _, a := range agents {
		a.stop()
	}
	for name, svc := range d.services {
		if status, _, err := post(ctx, "http://"+svc.addr+"/", "{}"); err != nil || status == 0 {
			return fmt.Errorf("%s did not survive being traced: %v", name, err)
		}
	}
	d.step("tracepoints removed, agents detached, all %d services still serving", len(d.services))
	return nil
}

// declareAndWait declares spec and waits until its process reports it
// installed, so no demo request runs before its tracepoint is live.
func (d *demoRun) declareAndWait(ctx context.Context, c *fleet.Client, spec *fleet.Spec) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	events, err := c.WatchStatus(wctx, spec.ID)
	if err != nil {
		return err
	}
	if err := c.Declare(ctx, spec); err != nil {
		return err
	}
	for ev := range events {
		switch ev.State {
		case fleet.StateInstalled:
			d.step("tracepoint %s at %s: %s on %s", spec.ID, spec.Location, ev.State, ev.Host)
			return nil
		case fleet.StateError:
			return fmt.Errorf("tracepoint %s on %s: %s", spec.ID, ev.Host, ev.Message)
		}
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return fmt.Errorf("tracepoint %s was not installed within 60s: run with -v to see the agents' logs", spec.ID)
}

// waitForHosts waits until n agents have announced themselves.
func waitForHosts(ctx context.Context, c *fleet.Client, n int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		hosts, err := c.Hosts(ctx)
		live := 0
		for _, h := range hosts {
			if !h.Gone {
				live++
			}
		}
		if err == nil && live >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d agents (%d up): %w", n, live, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

func post(ctx context.Context, url, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// demoService is a running demo service.
type demoService struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// startProcess runs bin; with a ready prefix, it waits for the line
// "READY pid=… addr=…" and keeps the address.
func startProcess(ctx context.Context, bin string, logw io.Writer, ready string, args ...string) (*demoService, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logw
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// Its own process group: a Ctrl-C meant for the demo reaches the demo,
	// which then stops the services in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &demoService{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	if ready == "" {
		go io.Copy(logw, out)
		return s, nil
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), ready); ok {
				for _, f := range strings.Fields(addr) {
					if a, ok := strings.CutPrefix(f, "addr="); ok {
						addrc <- a
					}
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case s.addr = <-addrc:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s exited before it was ready: %v", bin, cmd.ProcessState)
	case <-ctx.Done():
		s.stop()
		return nil, fmt.Errorf("waiting for %s to be ready: %w", bin, ctx.Err())
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s printed no READY line within 30s", bin)
	}
}

func (s *demoService) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}
