package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// Specs past the bounds, written straight into the bucket as no client
// would, are refused by the agent with a status naming the bound; the agent
// and the target live on. A stack depth of 1e9 once killed the agent.
func TestSpecBoundsInBucket(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	ctx := context.Background()
	line := agenttest.MarkerLine(t, loopSrc, "process")
	tps, _ := h.buckets()
	spec := func(id string, edit func(m map[string]any)) []byte {
		m := map[string]any{"v": 1, "id": id, "location": map[string]any{"path": "loop/main.go", "line": line}, "selector": map[string]any{}, "capture": map[string]any{"args": true, "locals": true}, "limits": map[string]any{}}
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, tc := range []struct {
		key   string
		value []byte
		want  string
	}{
		{"deep", spec("deep", func(m map[string]any) { m["capture"].(map[string]any)["stackDepth"] = 1_000_000_000 }), "capture.stackDepth is 1000000000, more than the 100"},
		{"wide", spec("wide", func(m map[string]any) { m["capture"].(map[string]any)["maxArrayValues"] = 1 << 30 }), "capture.maxArrayValues"},
		{"longcond", spec("longcond", func(m map[string]any) { m["condition"] = strings.Repeat("n == 1 || ", 3000) + "true" }), "condition's length"},
		{"huge", spec("huge", func(m map[string]any) { m["owner"] = strings.Repeat("o", fleet.MaxSpecBytes) }), "bytes, more than the 65536 an agent reads"},
	} {
		if _, err := tps.Put(ctx, tc.key, tc.value); err != nil {
			t.Fatal(err)
		}
		st := h.awaitStatus(tc.key, func(ev fleet.StatusEvent) bool { return ev.State == fleet.StateError })
		if !strings.Contains(st.Message, tc.want) {
			t.Errorf("status of %s = %q, want it to say %q", tc.key, st.Message, tc.want)
		}
	}
	if agenttest.TracerPid(p.Pid) != 0 {
		t.Errorf("the target was attached for specs the agent refused")
	}
	good := h.spec("good", "process")
	if err := h.c.Declare(ctx, good); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(good.ID, installed(p.Pid))
	h.hits(good.ID, 2)
	stillRunning(t, p)
}

// TestQuarantineAfterWorkerDeaths kills the Delve worker serving a
// tracepoint again and again, as a spec that crashes it would: after
// quarantineAfter deaths the agent stops placing it, says why in an error
// status, and lets the process run untraced. A changed spec is tried again.
//
// The target calls the traced line twice a second and each kill comes
// right after a hit: a kill while a thread runs into a breakpoint is the
// window the watchdog cannot close (agent/delve/watchdog_linux.go), which is
// not what this test is about.
func TestQuarantineAfterWorkerDeaths(t *testing.T) {
	t.Parallel()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	n := hostSeq.Add(1)
	h := &harness{t: t, c: c, host: fmt.Sprintf("quarantine-%d", n), exe: fmt.Sprintf("paced-quarantine-%d-%d", os.Getpid(), n)}
	h.bin = agenttest.Alias(t, agenttest.BuildTarget(t, pacedDir), h.exe)
	h.stop = agenttest.RunAgent(t, s, agent.Config{Host: h.host, Processes: []string{h.exe}}, &h.log)
	p := h.start("-rate", "2")
	spec := &fleet.Spec{
		ID:       "doomed",
		Location: fleet.Location{Path: "paced/main.go", Line: agenttest.MarkerLine(t, pacedSrc, "tick")},
		Capture:  fleet.DefaultCapture,
	}
	ctx := context.Background()
	if err := h.c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	killed := map[int]bool{}
	for i := 0; ; i++ {
		var worker int
		testsupport.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			if worker = agenttest.TracerPid(p.Pid); worker == 0 || killed[worker] {
				return fmt.Errorf("traced by %d, want a new worker", worker)
			}
			return nil
		})
		// Installed by this worker: it reports a hit, and the next is half a
		// second away.
		h.hitSince(spec.ID, p.Pid, time.Now())
		for anyTraceStopped(p.Pid) {
			time.Sleep(100 * time.Microsecond)
		}
		if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed[worker] = true
		if i == 2 {
			break
		}
	}
	st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == 0 && ev.State == fleet.StateError && !ev.Deleted })
	t.Logf("status: %s", st.Message)
	for _, want := range []string{"quarantined on host " + h.host, "died 3 times", "change what it captures or remove it"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("status %q does not say %q", st.Message, want)
		}
	}
	// Left alone: no worker comes back for it.
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if tp := agenttest.TracerPid(p.Pid); tp != 0 {
			return fmt.Errorf("still traced by %d", tp)
		}
		return nil
	})
	stillRunning(t, p)
	if agenttest.TracerPid(p.Pid) != 0 {
		t.Fatal("a quarantined tracepoint was placed again")
	}
	// Changed, it is tried again.
	spec.Capture.StackDepth = 3
	if err := h.c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(p.Pid))
}

// hitSince waits for a hit of tracepoint id in pid taken after since.
func (h *harness) hitSince(id string, pid int, since time.Time) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{id}, Since: since})
	if err != nil {
		h.t.Fatal(err)
	}
	defer r.Close()
	for {
		hit, err := r.Next(ctx)
		if err != nil {
			h.t.Fatalf("waiting for a hit of %s in pid %d: %v\nagent log:\n%s", id, pid, err, h.agentLog())
		}
		if hit.Pid == pid && hit.Time > since.UnixNano() {
			return
		}
	}
}

// A spec already expired, which no client declares, and a pid the
// allow-list refuses each get a status saying what is wrong and what to do,
// rather than waiting in silence.
func TestSpecsThatApplyNowhere(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	other := agenttest.Start(t, agenttest.Alias(t, h.bin, h.exe+"-other"))
	ctx := context.Background()

	old := h.spec("old", "process")
	old.Limits.ExpiresAt = time.Now().Add(-time.Minute).UTC()
	if err := h.c.Declare(ctx, old); fleet.AsError(err) == nil || fleet.AsError(err).Code != fleet.CodeExpired {
		t.Fatalf("declaring an expired spec: %v, want %s", err, fleet.CodeExpired)
	}
	tps, _ := h.buckets()
	if _, err := tps.Put(ctx, old.ID, fleet.Encode(old)); err != nil {
		t.Fatal(err)
	}
	st := h.awaitStatus(old.ID, func(ev fleet.StatusEvent) bool { return ev.State == fleet.StateDone })
	if !strings.Contains(st.Message, "expired at") || !strings.Contains(st.Message, "Declare it again") {
		t.Errorf("status of an expired spec: %q", st.Message)
	}

	byPid := h.spec("bypid", "process")
	byPid.Selector.Pids = []int{other.Pid}
	if err := h.c.Declare(ctx, byPid); err != nil {
		t.Fatal(err)
	}
	// Outside the globs, the pid may be another agent's: this one says why
	// it waits rather than refusing it.
	st = h.awaitStatus(byPid.ID, func(ev fleet.StatusEvent) bool {
		return ev.State == fleet.StatePending && strings.Contains(ev.Message, "outside this agent's attach allow-list")
	})
	if want := fmt.Sprintf("pid [%d] on host", other.Pid); st.Pid != 0 || !strings.Contains(st.Message, want) || !strings.Contains(st.Message, fmt.Sprintf("--processes [%q]", h.exe)) {
		t.Errorf("status of a pid outside the allow-list: %+v", st)
	}
	if agenttest.TracerPid(other.Pid) != 0 {
		t.Error("the agent attached to a process outside its allow-list")
	}
}

// TestSpecFuzz puts random specs, good and bad, into the bucket of a
// running agent with a real target, and checks that the agent and the target
// live through them and that every spec gets a status. RIPTRACE_SPEC_FUZZ=N
// runs N specs per backend (default 30). make test uses one fixed seed, so
// that its specs are the same every run; RIPTRACE_SPEC_FUZZ_SEED=N replays
// run N, and =random draws a new one.
func TestSpecFuzz(t *testing.T) {
	n := 30
	if v := os.Getenv("RIPTRACE_SPEC_FUZZ"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	seed := uint64(1796434498699156132)
	switch v := os.Getenv("RIPTRACE_SPEC_FUZZ_SEED"); v {
	case "":
	case "random":
		seed = uint64(time.Now().UnixNano())
	default:
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	backends := []string{agent.BackendDelve}
	if ebpf.Available() == nil {
		backends = append(backends, agent.BackendAuto)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			t.Logf("seed %d (RIPTRACE_SPEC_FUZZ_SEED=%d replays it)", seed, seed)
			testSpecFuzz(t, backend, n, rand.New(rand.NewPCG(seed, 21)))
		})
	}
}

func testSpecFuzz(t *testing.T, backend string, n int, r *rand.Rand) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	id := hostSeq.Add(1)
	h := &harness{t: t, srv: s, c: c, host: fmt.Sprintf("fuzz-%d", id), exe: fmt.Sprintf("agent-fuzz-%d-%d", os.Getpid(), id)}
	h.bin = agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), h.exe)
	cfg := agent.Config{Host: h.host, Processes: []string{h.exe}}
	var eb agent.Backend
	if backend != agent.BackendDelve {
		eb, cfg.BackendName = ebpf.New(), backend
	}
	h.stop = agenttest.RunAgentWith(t, s, cfg, &h.log, eb)
	p := h.start("-every", "10ms")
	g := specGen{r: r, host: h.host, exe: h.exe, pid: p.Pid, lines: []int{
		agenttest.MarkerLine(t, loopSrc, "process"), agenttest.MarkerLine(t, loopSrc, "loop"), agenttest.MarkerLine(t, loopSrc, "nocode"),
	}}
	ctx := context.Background()
	// Until the agent has found the target, every spec reads pending and
	// the tally below would say nothing of placing them.
	testsupport.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		prof, err := c.Profile(ctx, h.host)
		if err != nil {
			return err
		}
		for _, pr := range prof.Processes {
			if pr.Pid == p.Pid {
				return nil
			}
		}
		return fmt.Errorf("the agent does not list pid %d yet", p.Pid)
	})
	tps, statuses := h.buckets()
	const round = 10
	states := map[string]int{} // status entries by state, over every round
	for start := 0; start < n; start += round {
		want := map[string]bool{} // keys that must get a status
		var keys []string
		for i := start; i < min(start+round, n); i++ {
			key := fmt.Sprintf("fz-%d", i)
			raw, status := g.spec(key)
			if _, err := tps.Put(ctx, key, raw); err != nil {
				t.Fatalf("putting spec %s: %v", key, err)
			}
			keys = append(keys, key)
			if status {
				want[key] = true
			}
			t.Logf("%s (status expected: %v): %.300s", key, status, raw)
		}
		testsupport.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
			if !p.Alive() {
				t.Fatalf("the target died:\n%s\nagent log:\n%s", p.Stderr(), h.agentLog())
			}
			got, err := statusedKeys(ctx, statuses)
			if err != nil {
				return err
			}
			var missing []string
			for key := range want {
				if !got[key] {
					missing = append(missing, key)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("no status for %v", missing)
			}
			return nil
		})
		if err := tallyStates(ctx, statuses, states); err != nil {
			t.Fatal(err)
		}
		// The agent still answers, and still traces.
		if _, err := c.Profile(ctx, h.host); err != nil {
			t.Fatalf("the agent does not answer after specs %v: %v\nagent log:\n%s", keys, err, h.agentLog())
		}
		for _, key := range keys {
			if err := c.Remove(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d specs; status entries by state: %v", n, states)
	if n >= 30 && states[fleet.StateInstalled]+states[fleet.StateThrottled]+states[fleet.StateDone] == 0 {
		t.Errorf("no spec of %d was installed: the generator makes too few good ones", n)
	}
	good := h.spec("after-fuzz", "process")
	if err := c.Declare(ctx, good); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(good.ID, installed(p.Pid))
	h.hits(good.ID, 2)
	stillRunning(t, p)
	if strings.Contains(h.agentLog(), "panic") {
		t.Errorf("the agent survived a panic, which is a bug all the same:\n%s", h.agentLog())
	}
}

// tallyStates counts the status entries by state into states.
func tallyStates(ctx context.Context, statuses jetstream.KeyValue, states map[string]int) error {
	lister, err := statuses.ListKeys(ctx)
	if err != nil {
		return err
	}
	for k := range lister.Keys() {
		e, err := statuses.Get(ctx, k)
		if err != nil {
			continue
		}
		var st fleet.Status
		if fleet.Decode(e.Value(), "status", &st) == nil {
			states[st.State]++
		}
	}
	return nil
}

// statusedKeys returns the tracepoints that have an answer in the status
// bucket: an entry other than a process's pending one, which says only
// that the answer is coming.
func statusedKeys(ctx context.Context, statuses jetstream.KeyValue) (map[string]bool, error) {
	lister, err := statuses.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return map[string]bool{}, nil
		}
		return nil, err
	}
	got := map[string]bool{}
	for k := range lister.Keys() {
		e, err := statuses.Get(ctx, k)
		if err != nil {
			continue // withdrawn meanwhile
		}
		var st fleet.Status
		if fleet.Decode(e.Value(), "status", &st) == nil && st.Pid != 0 && st.State == fleet.StatePending {
			continue
		}
		got[strings.SplitN(k, ".", 2)[0]] = true
	}
	return got, nil
}

// specGen makes random tracepoint specs: mostly well formed, with values
// drawn from around every bound, and now and then garbage.
type specGen struct {
	r     *rand.Rand
	host  string
	exe   string
	pid   int
	lines []int
}

func (g specGen) pick(vs ...any) any { return vs[g.r.IntN(len(vs))] }

// mostly picks from good 39 times in 40, else from bad: a spec has a
// dozen fields, and one bad field makes it all bad.
func (g specGen) mostly(good []any, bad ...any) any {
	if len(bad) > 0 && g.r.IntN(40) == 0 {
		return g.pick(bad...)
	}
	return g.pick(good...)
}

// spec returns a spec to put under key, and whether the agent must give it
// a status: every spec must, but a good one whose hosts leave this host out.
func (g specGen) spec(key string) ([]byte, bool) {
	switch g.r.IntN(30) {
	case 0:
		return []byte(g.pick(`{"v":1,`, `[]`, `{"v":1,"id":"`+key+`","location":7}`, `null`).(string)), true
	case 1:
		return []byte(`{"v":1,"id":"` + key + `","owner":"` + strings.Repeat("x", fleet.MaxSpecBytes) + `"}`), true
	}
	big := func(s string, n int) string { return strings.Repeat(s, n) }
	capture := map[string]any{
		"args":           g.r.IntN(2) == 0,
		"locals":         g.r.IntN(2) == 0,
		"stackDepth":     g.mostly([]any{0, 1, 8, fleet.MaxStackDepth}, fleet.MaxStackDepth+1, 1_000_000_000, -1),
		"maxStringLen":   g.mostly([]any{0, 1, 64, fleet.MaxStringLen}, fleet.MaxStringLen+1, 1<<30),
		"maxArrayValues": g.mostly([]any{0, 1, 8, 64}, fleet.MaxArrayValues, fleet.MaxArrayValues+1, 1_000_000_000),
		"maxStructDepth": g.mostly([]any{0, 1, 2, 3}, fleet.MaxStructDepth, fleet.MaxStructDepth+1, 100),
		"maxVariables":   g.mostly([]any{0, 1, 32, fleet.MaxVariables}, fleet.MaxVariables+1, 1<<30),
	}
	var exprs []string
	for range g.mostly([]any{0, 0, 1, 2, 3}, fleet.MaxExprs+1).(int) {
		exprs = append(exprs, g.mostly([]any{"it", "it.Tags", "it.Meta", "n*2", "it.Owner.Email", "items", "label"}, "a[", big("x", 2000), "*(*int)(uintptr(0))").(string))
	}
	if len(exprs) > 0 {
		capture["exprs"] = exprs
	}
	sel := map[string]any{}
	matchesHost := true
	switch g.r.IntN(6) {
	case 0:
		sel["hosts"] = []string{g.host}
	case 1:
		sel["hosts"] = []string{"fuzz-*"}
	case 2:
		sel["hosts"] = []string{"other-host"}
		matchesHost = false
	case 3:
		if g.r.IntN(3) == 0 {
			sel["hosts"] = []string{g.pick("[", "a.b", "").(string)}
		}
	}
	switch g.r.IntN(5) {
	case 0:
		sel["processes"] = []string{g.exe}
	case 1:
		sel["processes"] = []string{g.mostly([]any{"*", "nothing-like-it"}, "[", "").(string)}
	case 2:
		sel["pids"] = []int{g.mostly([]any{g.pid, 1 << 30}, 0, -1).(int)}
	}
	limits := map[string]any{
		"maxHitsPerSecond": g.mostly([]any{0, 1, 1000, 1_000_000_000}, -1),
		"maxHits":          g.mostly([]any{0, 0, 1, 5}, -1),
	}
	if g.r.IntN(8) == 0 {
		limits["expiresAt"] = time.Now().Add(time.Duration(g.pick(-1, 1).(int)) * time.Hour).UTC()
	}
	id := key
	if g.r.IntN(30) == 0 {
		id = "not-" + key
	}
	m := map[string]any{
		"v":  1,
		"id": id,
		"location": map[string]any{
			"path": g.mostly([]any{"loop/main.go", "loop/main.go", "main.go", "no/such.go"}, "", big("a/", 600)+"main.go").(string),
			"line": g.mostly([]any{g.lines[0], g.lines[0], g.lines[1], g.lines[2], 1 << 20}, 0, -3).(int),
		},
		"selector":     sel,
		"condition":    g.mostly([]any{"", "", "n > 3", "it.Count == 2", "nosuch > 1", "len(it.Tags) > 0", "it.Owner.Token == \"x\"", "it.Owner.Name == \"bob\""}, "x >", big("n == 1 || ", 200)+"true").(string),
		"hitCondition": g.mostly([]any{"", "", "", "5", "% 2"}, "% 0", "bogus").(string),
		"logMessage":   g.mostly([]any{"", "", "n={n}", "{it}", "{it.Owner}"}, "{", big("{n}", 20), big("x", 5000)).(string),
		"capture":      capture,
		"limits":       limits,
		"backend":      g.mostly([]any{"", "", "auto", "delve", "ebpf"}, "bogus").(string),
	}
	b, _ := json.Marshal(m)
	var s fleet.Spec
	if err := fleet.Decode(b, "spec", &s); err == nil && s.Validate() == nil && s.ID == key {
		return b, matchesHost
	}
	return b, true
}

// Two tracepoints on one line written with different paths (loop/main.go
// and main.go name the same file) must not put a uprobe and a ptrace
// breakpoint on one instruction: the second is refused, and the target
// lives. TestSpecFuzz found this: the target died of SIGTRAP.
func TestSharedLineByAnotherPath(t *testing.T) {
	if err := ebpf.Available(); err != nil {
		t.Skipf("eBPF: %v", err)
	}
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	id := hostSeq.Add(1)
	h := &harness{t: t, c: c, host: fmt.Sprintf("share-%d", id), exe: fmt.Sprintf("agent-share-%d-%d", os.Getpid(), id)}
	h.bin = agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), h.exe)
	h.stop = agenttest.RunAgentWith(t, s, agent.Config{Host: h.host, Processes: []string{h.exe}, BackendName: agent.BackendAuto}, &h.log, ebpf.New())
	p := h.start("-every", "1ms")
	ctx := context.Background()
	byDelve := h.spec("by-delve", "process")
	byDelve.Backend = agent.BackendDelve
	if err := c.Declare(ctx, byDelve); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(byDelve.ID, installed(p.Pid))
	byEBPF := h.spec("by-ebpf", "process")
	byEBPF.Location.Path = "main.go"
	byEBPF.Backend = agent.BackendEBPF
	if err := c.Declare(ctx, byEBPF); err != nil {
		t.Fatal(err)
	}
	st := h.awaitStatus(byEBPF.ID, func(ev fleet.StatusEvent) bool {
		return ev.Pid == p.Pid && !ev.Deleted && ev.State != fleet.StatePending // an answer, not "installing"
	})
	t.Logf("%s: %s", st.State, st.Message)
	if st.State != fleet.StateError || !strings.Contains(st.Message, "one instruction cannot carry both") {
		t.Errorf("the second tracepoint on the line: %s %q, want it refused", st.State, st.Message)
	}
	h.hits(byDelve.ID, 20)
	stillRunning(t, p)
}
