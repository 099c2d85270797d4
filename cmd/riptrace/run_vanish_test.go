package main_test

import (
	"bytes"
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

	"github.com/riptrace/riptrace/agent/agenttest"
)

// TestRunFleetVanishes runs a scenario against a running fleet, a
// `riptrace server` and a `riptrace agent` of their own, and SIGKILLs one
// of them while a step runs: the run fails saying what vanished, ends the
// step under way, and stops every service it started.
func TestRunFleetVanishes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet and the demo services")
	}
	t.Parallel()
	for _, c := range []struct {
		kill string
		want string
	}{
		{"server", "lost the fleet: the NATS server at nats://127.0.0.1:"},
		{"agent", "lost the fleet: the agent on host vanish-agent-agent"},
	} {
		t.Run(c.kill, func(t *testing.T) {
			t.Parallel()
			server, url := startServerProc(t)
			dir := t.TempDir()
			demo, err := filepath.Abs(filepath.Join("..", "..", "demo"))
			if err != nil {
				t.Fatal(err)
			}
			// The agent selects the services by executable name: names
			// of this test's own.
			bins := map[string]string{}
			for _, svc := range []string{"payments", "orders", "gateway"} {
				bins[svc] = agenttest.AliasAt(t, agenttest.BuildTarget(t, filepath.Join(demo, svc)), filepath.Join(dir, exeName(svc+"-"+c.kill)))
			}
			host := "vanish-agent-" + c.kill + strconv.Itoa(os.Getpid())
			agent := start(t, "agent", "--nats", url, "--host", host,
				"--processes", filepath.Base(bins["payments"]), "--processes", filepath.Base(bins["orders"]), "--processes", filepath.Base(bins["gateway"]))
			pids := filepath.Join(dir, "pids")
			file := filepath.Join(dir, "vanish.yaml")
			text := fmt.Sprintf(`fleet: {nats: %q}
services:
  - {name: payments, command: %q, ready: {log: 'READY pid=\d+ addr=(?P<addr>\S+)'}}
  - {name: orders, command: %q, args: [-payments, "http://${payments.addr}"], ready: {log: 'READY pid=\d+ addr=(?P<addr>\S+)'}}
  - {name: gateway, command: %q, args: [-orders, "http://${orders.addr}"], ready: {log: 'READY pid=\d+ addr=(?P<addr>\S+)'}}
tracepoints:
  - {name: checkout, service: gateway, at: %q}
steps:
  - http: {url: "http://${gateway.addr}/checkout", body: '{"customer":"alice","items":[{"sku":"pen","qty":1}]}', status: 200}
  - until: {hits: checkout, count: 1}
  - sh: echo ${payments.pid} ${orders.pid} ${gateway.pid} $$ > %s.tmp && mv %s.tmp %s && sleep 600
    timeout: 15m
expect:
  - {hits: checkout, count: "== 1"}
`, url, bins["payments"], bins["orders"], bins["gateway"], filepath.Join(demo, "gateway", "main.go")+":@checkout", pids, pids, pids)
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			runner := start(t, "run", file)
			var started []int
			agenttest.CheckFor(t, 3*time.Minute, 50*time.Millisecond, func() error {
				b, err := os.ReadFile(pids)
				if err != nil {
					return fmt.Errorf("the step has not written the pids: %v; run's stderr:\n%s", err, runner.Stderr())
				}
				started = nil
				for _, f := range strings.Fields(string(b)) {
					pid, _ := strconv.Atoi(f)
					started = append(started, pid)
				}
				return nil
			})
			victim := map[string]*bg{"server": server, "agent": agent}[c.kill]
			victim.signal(t, syscall.SIGKILL)
			killed := time.Now()
			if code := runner.exitCode(t, 2*time.Minute); code != 1 {
				t.Errorf("riptrace run exited %d, want 1", code)
			}
			t.Logf("riptrace run exited %v after the %s was killed:\n%s", time.Since(killed).Round(10*time.Millisecond), c.kill, runner.Stdout())
			if out := runner.Stdout(); !strings.Contains(out, "✗ run: "+c.want) || !regexp.MustCompile(`FAIL \S+ in`).MatchString(out) {
				t.Errorf("the summary does not say %q:\n%s", c.want, out)
			}
			// The services and the step's shell are gone.
			for _, pid := range started {
				if running(pid) {
					t.Errorf("pid %d, started by the run, still runs after it", pid)
				}
			}
		})
	}
}

// running reports whether pid runs (a zombie waiting for its reaper does
// not count).
func running(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
