package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// The end-to-end tests drive the built riptrace binary the way a user does: a
// `riptrace server`, `riptrace agent`s as their own processes (a tracer must
// not be the parent of its tracees), targets started by the test, and the
// client commands. They observe what the commands and the targets print, and
// read the tracepoint bucket only to check that nothing is left declared.

// loopDir is the target the tests trace; its lines carry @trace markers.
const loopDir = "../../agent/testdata/targets/loop"

// testVersion is stamped into the binary under test.
const testVersion = "e2e-test"

// Deadlines. They bound how long a broken feature can hang a test; a working
// one takes a fraction of them.
const (
	cmdTimeout   = 30 * time.Second // a client command that should finish
	stateTimeout = 30 * time.Second // the fleet converging to a state
	stopTimeout  = 15 * time.Second // a process asked to stop
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// riptraceBin builds this package once per test process and returns the
// binary's path.
func riptraceBin(t testing.TB) string {
	t.Helper()
	return agenttest.BuildTarget(t, ".", "-ldflags=-X main.version="+testVersion)
}

// loopSource returns the absolute path of the loop target's main.go.
func loopSource(t testing.TB) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join(loopDir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// bg is a riptrace command running in the background. Its output is kept so
// that the test can await lines in it; the test's cleanup stops it and, if the
// test failed, logs its output.
type bg struct {
	*testsupport.Proc
	name string
}

// start runs `riptrace args...` in the background.
func start(t *testing.T, args ...string) *bg {
	t.Helper()
	return startUnder(t, nil, args...)
}

// startUnder runs `riptrace args...` in the background through the command
// wrap (for example ip netns exec NS, or setpriv with fewer capabilities);
// nil runs it directly.
func startUnder(t *testing.T, wrap []string, args ...string) *bg {
	t.Helper()
	argv := append(append(slices.Clone(wrap), riptraceBin(t)), args...)
	p := &bg{
		name: strings.TrimSpace(strings.Join(wrap, " ") + " riptrace " + strings.Join(args, " ")),
		Proc: testsupport.Launch(t, nil, argv[0], argv[1:]...),
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s (pid %d):\n--- stdout:\n%s--- stderr:\n%s", p.name, p.Pid, p.Output(), p.Stderr())
		}
	})
	return p
}

// signal sends sig to the command.
func (p *bg) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// await waits until ok accepts the command's output so far. It fails the test,
// saying it was waiting for what, if the command exits first or timeout
// passes.
func (p *bg) await(t *testing.T, timeout time.Duration, what string, ok func(stdout, stderr string) bool) {
	t.Helper()
	p.Await(t, timeout, what, ok)
}

// exitCode waits up to timeout for the command to exit and returns its exit
// status.
func (p *bg) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	return p.ExitCode(t, timeout)
}

// stop ends the command if it still runs: SIGTERM, then SIGKILL.
func (p *bg) stop() error {
	select {
	case <-p.Exited():
		return nil
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
		return nil
	case <-time.After(stopTimeout):
	}
	if why := p.Lingering(); why != "" {
		<-p.Exited()
		return fmt.Errorf("%s not reaped %v after SIGTERM: %s", p.name, stopTimeout, why)
	}
	p.Cmd.Process.Kill()
	<-p.Exited()
	return fmt.Errorf("%s still running %v after SIGTERM: killed it", p.name, stopTimeout)
}

// Stdout returns what the command has written to stdout so far.
func (p *bg) Stdout() string { return p.Output() }

// result is the outcome of a command run to completion.
type result struct {
	stdout, stderr string
	code           int
}

// run runs `riptrace args...` to completion and fails the test if it takes
// longer than timeout.
func run(t testing.TB, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, riptraceBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	name := "riptrace " + strings.Join(args, " ")
	if ctx.Err() != nil {
		t.Fatalf("%s did not exit within %v\n--- stdout:\n%s--- stderr:\n%s", name, timeout, &stdout, &stderr)
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", name, err)
	}
	return r
}

var serverReady = regexp.MustCompile(`(?m)^riptrace server ready: (nats://\S+) `)

// tokenNATS starts an in-process nats-server with JetStream that wants the
// token s3cret, and returns its client URL.
func tokenNATS(t *testing.T) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, Authorization: "s3cret"}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// startServer starts `riptrace server` on a free port with a fresh store and
// returns the client URL its ready line gives.
func startServer(t *testing.T) string {
	t.Helper()
	_, url := startServerProc(t)
	return url
}

// startServerProc is startServer that also returns the server's process.
func startServerProc(t *testing.T) (*bg, string) {
	t.Helper()
	p := start(t, "server", "--listen", "127.0.0.1:-1", "--data", t.TempDir())
	var url string
	p.await(t, cmdTimeout, "ready line", func(stdout, _ string) bool {
		m := serverReady.FindStringSubmatch(stdout)
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return p, url
}

// startAgent starts `riptrace agent` for host, managing the processes whose
// executables have the given names.
func startAgent(t *testing.T, url, host string, exes ...string) *bg {
	t.Helper()
	args := []string{"agent", "--nats", url, "--host", host}
	for _, e := range exes {
		args = append(args, "--processes", exeName(e))
	}
	return start(t, args...)
}

// exeName makes a target's name unique to this test process: agents of
// other test runs on the machine select by executable name too.
func exeName(name string) string {
	return name + "-" + strconv.Itoa(os.Getpid())
}

// startTarget starts the loop target, built as production builds it, with
// args as an executable called name: agents tell processes apart by
// executable name. Start targets before the agents that trace them, so that
// cleanups stop the agents (which detach) before they kill the targets.
func startTarget(t *testing.T, name string, args ...string) *agenttest.Proc {
	t.Helper()
	return startTargetBuild(t, agenttest.BuildTarget(t, loopDir), name, args...)
}

// startTargetBuild is startTarget for a given build of a target.
func startTargetBuild(t *testing.T, bin, name string, args ...string) *agenttest.Proc {
	t.Helper()
	return agenttest.Start(t, agenttest.Alias(t, bin, exeName(name)), args...)
}

// listHosts runs `riptrace hosts --json` and decodes what it prints.
func listHosts(t testing.TB, url string) ([]fleet.HostEntry, error) {
	t.Helper()
	r := run(t, cmdTimeout, "hosts", "--nats", url, "--json")
	if r.code != 0 {
		return nil, fmt.Errorf("riptrace hosts --json: exit status %d\n%s", r.code, r.stderr)
	}
	var hosts []fleet.HostEntry
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hosts); err != nil {
		return nil, fmt.Errorf("decoding the output of riptrace hosts --json: %v\n%s", err, r.stdout)
	}
	if hosts == nil {
		return nil, fmt.Errorf("riptrace hosts --json printed %q, want a JSON array", strings.TrimSpace(r.stdout))
	}
	return hosts, nil
}

// findHost returns the live entry of host.
func findHost(hosts []fleet.HostEntry, host string) (*fleet.HostEntry, error) {
	for i := range hosts {
		h := &hosts[i]
		if h.Name != host {
			continue
		}
		if h.Gone || h.Profile == nil {
			return nil, fmt.Errorf("host %s is listed as gone (%s)", host, h.Error)
		}
		return h, nil
	}
	return nil, fmt.Errorf("host %s is not listed", host)
}

// findProcess returns pid's entry on host.
func findProcess(hosts []fleet.HostEntry, host string, pid int) (*fleet.Process, error) {
	h, err := findHost(hosts, host)
	if err != nil {
		return nil, err
	}
	for i := range h.Profile.Processes {
		if p := &h.Profile.Processes[i]; p.Pid == pid {
			return p, nil
		}
	}
	return nil, fmt.Errorf("host %s does not list pid %d", host, pid)
}

// awaitProcesses polls `riptrace hosts --json` until every target is listed
// on its host and check accepts each of them.
func awaitProcesses(t *testing.T, url string, where map[*agenttest.Proc]string, check func(*fleet.Process) error) {
	t.Helper()
	testsupport.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		hosts, err := listHosts(t, url)
		if err != nil {
			return err
		}
		for target, host := range where {
			p, err := findProcess(hosts, host, target.Pid)
			if err != nil {
				return err
			}
			if err := check(p); err != nil {
				return fmt.Errorf("host %s pid %d: %w", host, p.Pid, err)
			}
		}
		return nil
	})
}

// detached accepts a process no agent is attached to.
func detached(p *fleet.Process) error {
	if p.Attached || len(p.Tracepoints) > 0 {
		return fmt.Errorf("attached=%v with tracepoints %v, want detached with none", p.Attached, p.Tracepoints)
	}
	return nil
}

// awaitNoTracepoints polls the tracepoint bucket until it is empty: every
// `riptrace trace` that exited removed its tracepoint.
func awaitNoTracepoints(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	c, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: "riptrace e2e test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testsupport.CheckFor(t, stateTimeout, 50*time.Millisecond, func() error {
		specs, err := c.Tracepoints(ctx)
		if err != nil {
			return err
		}
		var ids []string
		for _, s := range specs {
			ids = append(ids, s.ID+" ("+s.Owner+")")
		}
		if len(ids) > 0 {
			return fmt.Errorf("tracepoints still declared: %v", ids)
		}
		return nil
	})
}

// decodeHits decodes the output of `riptrace trace --json`, one hit per line.
func decodeHits(t *testing.T, out string) []fleet.Hit {
	t.Helper()
	var hits []fleet.Hit
	for _, p := range decodePlaced(t, out) {
		hits = append(hits, p.Hit)
	}
	return hits
}

// decodePlaced decodes the complete lines of riptrace trace --json (or
// timeline --json) strictly: hits of the timeline.
func decodePlaced(t *testing.T, out string) []fleet.Placed {
	t.Helper()
	var hits []fleet.Placed
	for _, h := range decodeTraced(t, out) {
		hits = append(hits, h.Placed)
	}
	return hits
}

// traced is one line of riptrace trace --json: a hit of the timeline, and
// its line in the checkout when that differs.
type traced struct {
	fleet.Placed
	Checkout *struct {
		File string `json:"file"`
		Line int    `json:"line"`
	} `json:"checkout"`
}

// decodeTraced decodes the complete lines of riptrace trace --json
// strictly.
func decodeTraced(t *testing.T, out string) []traced {
	t.Helper()
	var hits []traced
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(line, "\n") {
			break // still being written
		}
		var h traced
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			t.Fatalf("hit %d of riptrace trace --json does not decode as a fleet.Placed: %v\n%s", len(hits)+1, err, line)
		}
		hits = append(hits, h)
	}
	return hits
}

// pidsOf returns the pids hits came from.
func pidsOf(hits []fleet.Hit) map[int]int {
	pids := make(map[int]int)
	for _, h := range hits {
		pids[h.Pid]++
	}
	return pids
}

var tracingLine = regexp.MustCompile(`(?m)^riptrace: tracing \S+ as (\S+) `)

// tracepointID returns the id `riptrace trace` announced on stderr.
func tracepointID(t *testing.T, stderr string) string {
	t.Helper()
	m := tracingLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("riptrace trace did not say which tracepoint it declared:\n%s", stderr)
	}
	return m[1]
}

// statusLine returns the status line `riptrace trace` printed for pid in
// state, or "".
func statusLine(stderr string, pid int, state string) string {
	for line := range strings.Lines(stderr) {
		if strings.Contains(line, "["+strconv.Itoa(pid)+"]: "+state+": ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

var aliveLine = regexp.MustCompile(`(?m)^ALIVE n=(\d+) `)

// lastAlive returns the iteration count of the last ALIVE line in out, or -1.
func lastAlive(out string) int64 {
	ms := aliveLine.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		return -1
	}
	n, _ := strconv.ParseInt(ms[len(ms)-1][1], 10, 64)
	return n
}

// awaitProgress waits for every target to print an ALIVE line counting more
// iterations than the last one it printed before the call: the targets run
// on, neither killed by a stray breakpoint nor left stopped.
func awaitProgress(t *testing.T, targets ...*agenttest.Proc) {
	t.Helper()
	before := make([]int64, len(targets))
	for i, p := range targets {
		before[i] = lastAlive(p.Output())
	}
	testsupport.CheckFor(t, stateTimeout, 20*time.Millisecond, func() error {
		for i, p := range targets {
			if !p.Alive() {
				// Gone, so no debugger holds it: reaping it is safe.
				t.Fatalf("target pid %d is gone (%v)\n--- stdout:\n%s--- stderr:\n%s", p.Pid, p.Wait(time.Second), p.Output(), p.Stderr())
			}
			if n := lastAlive(p.Output()); n <= before[i] {
				return fmt.Errorf("target pid %d printed no ALIVE line counting more than %d iterations (last: %d)", p.Pid, before[i], n)
			}
		}
		return nil
	})
}

// varNamed returns the variable called name in vs, or nil.
func varNamed(vs []fleet.Variable, name string) *fleet.Variable {
	i := slices.IndexFunc(vs, func(v fleet.Variable) bool { return v.Name == name })
	if i < 0 {
		return nil
	}
	return &vs[i]
}
