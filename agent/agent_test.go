package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

const loopDir = "testdata/targets/loop"

var loopSrc = filepath.Join(loopDir, "main.go")

// harness is one real NATS server, one agent on it, and a fleet client.
type harness struct {
	t    *testing.T
	srv  *server.Server
	c    *fleet.Client
	host string
	exe  string // the base name of this test's target binary
	bin  string
	stop func()     // stops the agent; it detaches from everything
	log  syncBuffer // the agent's log
}

// syncBuffer is a bytes.Buffer safe for the agent's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (h *harness) agentLog() string { return h.log.String() }

var hostSeq atomic.Int64

// newHarness starts a server and an agent that manages only this test's own
// copies of the loop target (built with flags), so parallel tests never
// attach to each other's processes.
func newHarness(t *testing.T, flags ...string) *harness {
	t.Helper()
	return newHarnessWith(t, agent.Config{}, flags...)
}

// newHarnessWith is newHarness with more agent configuration.
func newHarnessWith(t *testing.T, cfg agent.Config, flags ...string) *harness {
	t.Helper()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	n := hostSeq.Add(1)
	h := &harness{t: t, srv: s, c: c, host: fmt.Sprintf("host-%d", n), exe: fmt.Sprintf("agent-test-%d-%d", os.Getpid(), n)}
	h.bin = agenttest.Alias(t, agenttest.BuildTarget(t, loopDir, flags...), h.exe)

	cfg.Host, cfg.Processes = h.host, []string{h.exe}
	h.stop = agenttest.RunAgent(t, s, cfg, &h.log)
	return h
}

// buckets opens the tracepoint and status buckets on a plain connection
// of the test's own: to write what no client would, and to read every
// status.
func (h *harness) buckets() (tps, statuses jetstream.KeyValue) {
	h.t.Helper()
	_, js := fleettest.Raw(h.t, h.srv)
	ctx := context.Background()
	tps, err := js.KeyValue(ctx, h.c.Subjects().TracepointBucket())
	if err != nil {
		h.t.Fatal(err)
	}
	if statuses, err = js.KeyValue(ctx, h.c.Subjects().StatusBucket()); err != nil {
		h.t.Fatal(err)
	}
	return tps, statuses
}

func (h *harness) start(args ...string) *agenttest.Proc {
	return agenttest.Start(h.t, h.bin, args...)
}

func (h *harness) spec(id, marker string) *fleet.Spec {
	return &fleet.Spec{
		ID:       id,
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(h.t, loopSrc, marker)},
		Capture:  fleet.DefaultCapture,
		Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
	}
}

// awaitStatus waits for a status of tracepoint id for which ok is true.
func (h *harness) awaitStatus(id string, ok func(fleet.StatusEvent) bool) fleet.StatusEvent {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := h.c.WatchStatus(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	var last []string
	for ev := range ch {
		if ok(ev) {
			return ev
		}
		last = append(last, fmt.Sprintf("%+v", ev))
	}
	h.t.Fatalf("no matching status for %s within 30s; saw:\n%s", id, strings.Join(last, "\n"))
	return fleet.StatusEvent{}
}

func installed(pid int) func(fleet.StatusEvent) bool {
	return func(ev fleet.StatusEvent) bool {
		return ev.Pid == pid && ev.State == fleet.StateInstalled && !ev.Deleted
	}
}

// hits reads n hits of tracepoint id from the stream's beginning.
func (h *harness) hits(id string, n int) []fleet.Hit {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{id}, Replay: true})
	if err != nil {
		h.t.Fatal(err)
	}
	defer r.Close()
	var out []fleet.Hit
	for len(out) < n {
		hit, err := r.Next(ctx)
		if err != nil {
			h.t.Fatalf("reading hit %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, hit)
	}
	return out
}

func (h *harness) attached(pid int) bool {
	h.t.Helper()
	p, err := h.c.Profile(context.Background(), h.host)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, proc := range p.Processes {
		if proc.Pid == pid {
			return proc.Attached
		}
	}
	return false
}

// stillRunning checks that p kept running: it prints a new ALIVE line.
func stillRunning(t *testing.T, p *agenttest.Proc) {
	t.Helper()
	if !p.Alive() {
		err := p.Wait(time.Second)
		t.Fatalf("target %d died (%v); %s", p.Pid, err, p.Stderr()+"\nstdout:\n"+p.Output())
	}
	n := strings.Count(p.Output(), "ALIVE")
	testsupport.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if strings.Count(p.Output(), "ALIVE") <= n {
			return errors.New("no new ALIVE line")
		}
		return nil
	})
}

func TestHitsCarryValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{{"optimized", nil}, {"noopt", []string{agenttest.NoOpt}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.flags...)
			p := h.start()
			spec := h.spec("values", "process")
			spec.LogMessage = "item {it.ID} n={n}"
			spec.Capture.Exprs = []string{"it.Owner", "len(it.Tags)"}
			if err := h.c.Declare(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			st := h.awaitStatus(spec.ID, installed(p.Pid))
			if st.Placement == nil || st.Placement.Function != "main.process" || len(st.Placement.PCs) == 0 {
				t.Fatalf("placement = %+v, want main.process with PCs", st.Placement)
			}
			line := agenttest.MarkerLine(t, loopSrc, "process")
			for _, hit := range h.hits(spec.ID, 6) {
				if hit.Pid != p.Pid || hit.Host != h.host || hit.Line != line || hit.Function != "main.process" {
					t.Fatalf("hit from %s pid %d at %s:%d in %s; want %s pid %d at line %d in main.process", hit.Host, hit.Pid, hit.File, hit.Line, hit.Function, h.host, p.Pid, line)
				}
				if hit.Goroutine <= 0 || hit.Seq == 0 || hit.ServerTime.IsZero() || hit.Process.Exe != h.exe {
					t.Fatalf("hit lacks goroutine, seq, server time or process: %+v", hit)
				}
				it, n := fleettest.Var(hit.Args, "it"), fleettest.Var(hit.Args, "n")
				if it == nil || n == nil {
					t.Fatalf("args = %+v, want it and n", hit.Args)
				}
				id := fleettest.Var(it.Children, "ID")
				if id == nil || !strings.Contains("\"book\" \"lamp\" \"pen\"", id.Value) {
					t.Fatalf("it's children = %+v, want ID followed through the pointer", it.Children)
				}
				// Secrets never leave the host: Owner.Token is redacted,
				// in the tree and in the one-line value alike.
				if owner := fleettest.Var(it.Children, "Owner"); owner != nil && len(owner.Children) > 0 {
					if tok := fleettest.Var(owner.Children, "Token"); tok == nil || tok.Value != agent.Redacted {
						t.Errorf("Owner.Token = %+v, want %s", tok, agent.Redacted)
					}
				}
				if strings.Contains(fmt.Sprint(hit.Args, hit.Exprs), "tok-alice-secret") {
					t.Errorf("a secret left the host: %+v %+v", hit.Args, hit.Exprs)
				}
				wantMsg := fmt.Sprintf("item %s n=%s", strings.Trim(id.Value, `"`), n.Value)
				if hit.Message != wantMsg {
					t.Errorf("log message = %q, want %q", hit.Message, wantMsg)
				}
				if fleettest.Var(hit.Locals, "units") == nil || fleettest.Var(hit.Locals, "label") == nil {
					t.Errorf("locals = %+v, want units and label", hit.Locals)
				}
				if len(hit.Exprs) != 2 || hit.Exprs[1].Unreadable != "" {
					t.Errorf("exprs = %+v, want it.Owner and len(it.Tags)", hit.Exprs)
				}
				if len(hit.Stack) < 2 || hit.Stack[0].Function != "main.process" || hit.Stack[1].Function != "main.main" {
					t.Errorf("stack = %+v, want main.process called by main.main", hit.Stack)
				}
			}
			if err := h.c.Remove(context.Background(), spec.ID); err != nil {
				t.Fatal(err)
			}
			testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
				if h.attached(p.Pid) {
					return errors.New("still attached after its only tracepoint was removed")
				}
				return nil
			})
			stillRunning(t, p)
		})
	}
}

func TestConditionsAndHitConditions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	cond := h.spec("cond", "process")
	cond.Condition = "n % 4 == 1"
	if err := h.c.Declare(context.Background(), cond); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(cond.ID, installed(p.Pid))
	for _, hit := range h.hits(cond.ID, 5) {
		n := fleettest.Var(hit.Args, "n")
		var v int
		if n == nil || func() error { _, err := fmt.Sscan(n.Value, &v); return err }() != nil || v%4 != 1 {
			t.Fatalf("hit with n = %+v despite condition %q", n, cond.Condition)
		}
	}

	// A hit condition of "% 3" reports every third hit of the line.
	hc := h.spec("hitcond", "loop")
	hc.HitCondition = "% 3"
	if err := h.c.Declare(context.Background(), hc); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(hc.ID, installed(p.Pid))
	hits := h.hits(hc.ID, 4)
	for i := 1; i < len(hits); i++ {
		a, b := fleettest.Var(hits[i-1].Locals, "n"), fleettest.Var(hits[i].Locals, "n")
		var x, y int
		fmt.Sscan(a.Value, &x)
		fmt.Sscan(b.Value, &y)
		if y-x != 3 {
			t.Fatalf("consecutive hits at n=%d and n=%d, want every third iteration", x, y)
		}
	}
	stillRunning(t, p)
}

func TestLaterProcessGetsTracepoint(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spec := h.spec("later", "process")
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool {
		return ev.Pid == 0 && ev.State == fleet.StatePending && strings.Contains(ev.Message, "no Go process")
	})
	p := h.start()
	h.awaitStatus(spec.ID, installed(p.Pid))
	if hit := h.hits(spec.ID, 1)[0]; hit.Pid != p.Pid {
		t.Fatalf("hit from pid %d, want %d", hit.Pid, p.Pid)
	}
}

func TestBadLocations(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	ctx := context.Background()
	for _, tc := range []struct {
		name, path string
		line       int
		code, msg  string
	}{
		{"unknown file", "nosuch/file.go", 10, fleet.CodeNoFile, "no source file of this program ends in nosuch/file.go"},
		{"ambiguous file", "proc.go", 10, fleet.CodeNoFile, "give more of the path"},
		{"line without code", "loop/main.go", agenttest.MarkerLine(t, loopSrc, "nocode"), fleet.CodeNoCode, "has no code"},
		{"line past the end", "loop/main.go", 100000, fleet.CodeNoCode, "pick a line with a statement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &fleet.Spec{ID: "bad-" + fleet.Token(tc.name), Location: fleet.Location{Path: tc.path, Line: tc.line}, Capture: fleet.DefaultCapture}
			r, err := h.c.CreateTracepoint(ctx, h.host, spec)
			if err != nil {
				t.Fatalf("createTracepoint: %v", err)
			}
			if len(r.Placements) != 1 || r.Placements[0].Error == nil {
				t.Fatalf("placements = %+v, want one error", r.Placements)
			}
			if e := r.Placements[0].Error; e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error = %s: %q; want %s containing %q", e.Code, e.Message, tc.code, tc.msg)
			}
			if err := h.c.ClearTracepoint(ctx, h.host, spec.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A condition that parses but cannot be evaluated fails at the first hit:
	// the tracepoint is removed with the reason, the target runs on.
	spec := h.spec("badcond", "process")
	spec.Condition = "nosuchvar > 1"
	if err := h.c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == p.Pid && ev.State == fleet.StateError })
	if !strings.Contains(st.Message, "nosuchvar") || !strings.Contains(st.Message, "fix the condition") {
		t.Fatalf("status message %q should name the condition's problem and what to do", st.Message)
	}
	// A condition that does not parse is refused before it reaches the fleet.
	spec.Condition = "n >"
	if err := h.c.Declare(ctx, spec); fleet.AsError(err).Code != fleet.CodeBadCondition {
		t.Fatalf("declaring condition %q: %v, want %s", spec.Condition, err, fleet.CodeBadCondition)
	}
	stillRunning(t, p)
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	nc, _ := fleettest.Raw(t, h.srv)
	subj := h.c.Subjects()
	ctx := context.Background()
	for _, subject := range []string{subj.ProfileGet(h.host), subj.Attach(h.host), subj.CreateTracepoint(h.host), subj.ClearTracepoint(h.host)} {
		for _, tc := range []struct {
			name, payload, code string
		}{
			{"malformed", `{"v":1,`, fleet.CodeBadRequest},
			{"not an object", `[1,2]`, fleet.CodeBadRequest},
			{"unknown version", `{"v":99}`, fleet.CodeBadVersion},
			{"no version", `{"pid":1}`, fleet.CodeBadRequest},
			{"unknown field", `{"v":1,"bogus":true}`, fleet.CodeBadRequest},
		} {
			msg, err := nc.Request(subject, []byte(tc.payload), 10*time.Second)
			if err != nil {
				t.Fatalf("%s on %s: %v", tc.name, subject, err)
			}
			e := looseError(t, msg)
			if e == nil || e.Code != tc.code || e.Message == "" {
				t.Errorf("%s on %s: reply %s, want error %s", tc.name, subject, msg.Data, tc.code)
			}
		}
	}
	// Pids that cannot be traced.
	for _, tc := range []struct {
		name string
		pid  int
		code string
	}{
		{"no such pid", 1 << 30, fleet.CodeNoProcess},
		{"not a Go program", startSleep(t), fleet.CodeNotGo},
		{"the agent itself", os.Getpid(), fleet.CodeNotManaged},
	} {
		_, err := h.c.Attach(ctx, h.host, tc.pid)
		if e := fleet.AsError(err); e == nil || e.Code != tc.code {
			t.Errorf("attach %s: %v, want %s", tc.name, err, tc.code)
		}
	}
	// The agent still serves.
	if _, err := h.c.Profile(ctx, h.host); err != nil {
		t.Fatalf("agent stopped serving after bad requests: %v", err)
	}
}

// looseError reads the error field of any reply.
func looseError(t *testing.T, msg *nats.Msg) *fleet.Error {
	var r struct {
		Error *fleet.Error `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("reply %s is not JSON: %v", msg.Data, err)
	}
	return r.Error
}

func startSleep(t *testing.T) int {
	p := agenttest.Start(t, "/bin/sh", "-c", "echo READY pid=$$; exec sleep 60")
	return p.Pid
}

func TestProcessExitsWhileAttached(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	spec := h.spec("exits", "process")
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events, err := h.c.WatchStatus(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(p.Pid))
	// Exits once attached, however long attaching took (-exit-after 2s
	// exited first at load 25).
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Once it exits, its status says so, is withdrawn, and the tracepoint
	// waits for the next matching process.
	var said string
	for ev := range events {
		if ev.Pid != p.Pid {
			continue
		}
		if ev.Deleted {
			break
		}
		if ev.State == fleet.StateDone {
			said = ev.Message
		}
	}
	if want := fmt.Sprintf("process %d exited", p.Pid); !strings.HasPrefix(said, want) {
		t.Errorf("last status before the entry was withdrawn: %q, want it to start with %q", said, want)
	}
	h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == 0 && ev.State == fleet.StatePending })
	if err := p.Wait(10 * time.Second); err != nil && !strings.Contains(err.Error(), "reaped") {
		t.Logf("target exit: %v", err)
	}
	p2 := h.start()
	h.awaitStatus(spec.ID, installed(p2.Pid))
}

func TestShutdownDetaches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	spec := h.spec("shutdown", "process")
	spec.Limits.MaxHitsPerSecond = 0 // every iteration stops the target
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(p.Pid))
	h.hits(spec.ID, 20)
	h.stop()
	// Breakpoints were removed before detaching: a stray int3 would kill the
	// target with SIGTRAP at its next iteration.
	stillRunning(t, p)
	_, statuses := h.buckets()
	entries, err := statuses.Keys(context.Background())
	if err == nil && len(entries) > 0 {
		t.Errorf("status entries left after shutdown: %v", entries)
	}
}

func TestMaxHits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	spec := h.spec("max", "process")
	spec.Limits.MaxHits = 3
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == p.Pid && ev.State == fleet.StateDone })
	if st.Hits != 3 {
		t.Fatalf("status hits = %d, want 3", st.Hits)
	}
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if h.attached(p.Pid) {
			return errors.New("still attached after maxHits")
		}
		return nil
	})
	stillRunning(t, p)
}

func TestMalformedSpecInBucket(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	tps, _ := h.buckets()
	for _, tc := range []struct{ key, value, want string }{
		{"garbled", `{"v":1,`, "malformed tracepoint spec"},
		{"future", `{"v":7,"id":"future"}`, "version 7"},
		{"mismatch", string(fleet.Encode(&fleet.Spec{ID: "other", Location: fleet.Location{Path: "a.go", Line: 1}})), "the key must be the id"},
	} {
		if _, err := tps.Put(ctx, tc.key, []byte(tc.value)); err != nil {
			t.Fatal(err)
		}
		st := h.awaitStatus(tc.key, func(ev fleet.StatusEvent) bool { return ev.State == fleet.StateError })
		if !strings.Contains(st.Message, tc.want) {
			t.Errorf("status of %s = %q, want it to say %q", tc.key, st.Message, tc.want)
		}
	}
	// The agent keeps serving, and a good spec still works.
	p := h.start()
	spec := h.spec("good", "process")
	if err := h.c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(p.Pid))
}

// A process whose program lacks the file is never attached: attaching stops
// it while Delve reads its debug info.
func TestNoAttachWithoutTheFile(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	spec := &fleet.Spec{ID: "elsewhere", Location: fleet.Location{Module: "github.com/acme/other", Path: "pay/charge.go", Line: 3}, Capture: fleet.DefaultCapture}
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == p.Pid && ev.State == fleet.StateError })
	if !strings.Contains(st.Message, "no source file of this program ends in pay/charge.go") {
		t.Fatalf("status = %q", st.Message)
	}
	if h.attached(p.Pid) || strings.Contains(h.agentLog(), "msg=attached") {
		t.Fatal("the agent attached to a process without the file")
	}
}

func TestProfileFiles(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	testsupport.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		prof, err := h.c.ProfileFiles(context.Background(), h.host)
		if err != nil {
			return err
		}
		for _, proc := range prof.Processes {
			if proc.Pid != p.Pid {
				continue
			}
			for _, f := range proc.Files {
				if strings.HasSuffix(f, "targets/loop/main.go") {
					return nil
				}
			}
			return fmt.Errorf("pid %d lists %d files, none of them loop/main.go", p.Pid, len(proc.Files))
		}
		return fmt.Errorf("pid %d not listed yet", p.Pid)
	})
	if h.attached(p.Pid) {
		t.Fatal("listing a process's files attached to it")
	}
	// A plain profile stays small.
	prof, err := h.c.Profile(context.Background(), h.host)
	if err != nil {
		t.Fatal(err)
	}
	for _, proc := range prof.Processes {
		if len(proc.Files) > 0 {
			t.Fatalf("a plain profile lists files for pid %d", proc.Pid)
		}
	}
}

// The agent never attaches to RipTrace's own plumbing: its Delve workers
// run its own executable.
func TestNoAttachToPlumbing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	spec := h.spec("plumbing", "process")
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(p.Pid))
	// The target is traced by a worker: a copy of this test binary.
	worker := agenttest.TracerPid(p.Pid)
	if worker == 0 {
		t.Fatal("the target has no tracer")
	}
	_, err := h.c.Attach(context.Background(), h.host, worker)
	if e := fleet.AsError(err); e == nil || e.Code != fleet.CodeNotManaged || !strings.Contains(e.Message, "plumbing") {
		t.Fatalf("attaching to the agent's worker: %v, want %s naming the plumbing", err, fleet.CodeNotManaged)
	}
}

// Files and functions on the agent's deny list are never traced.
func TestDenyList(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, agent.Config{Deny: []string{"main.process"}})
	// Hits come while the breakpoint is set, before the agent learns which
	// function it is in: not one of them may leave.
	p := h.start("-every", "100us")
	spec := h.spec("denied", "process")
	spec.Limits.MaxHitsPerSecond = 0
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == p.Pid && ev.State == fleet.StateError })
	if !strings.Contains(st.Message, "not allowed") || !strings.Contains(st.Message, `--deny "main.process"`) {
		t.Fatalf("status = %q, want the refusal naming the rule", st.Message)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := h.c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var leaked []fleet.Hit
	for {
		hit, err := r.Next(ctx)
		if err != nil {
			break
		}
		leaked = append(leaked, hit)
	}
	if len(leaked) > 0 {
		t.Errorf("%d hits of a tracepoint in a denied function were published, the first with args %v", len(leaked), leaked[0].Args)
	}
	// The loop line is in another function: allowed.
	ok := h.spec("allowed", "loop")
	if err := h.c.Declare(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(ok.ID, installed(p.Pid))
	// A file glob refuses before attaching.
	h2 := newHarnessWith(t, agent.Config{Deny: []string{"*/targets/loop/*"}})
	p2 := h2.start()
	spec2 := h2.spec("file-denied", "process")
	if err := h2.c.Declare(context.Background(), spec2); err != nil {
		t.Fatal(err)
	}
	h2.awaitStatus(spec2.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == p2.Pid && ev.State == fleet.StateError })
	if strings.Contains(h2.agentLog(), "msg=attached") {
		t.Fatal("the agent attached to trace a denied file")
	}
}

// A restarted target (a new pid) gets its tracepoints back without anyone
// re-sending them. How long that takes is logged, not asserted: timing
// belongs to benchmarks.
func TestTargetRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start()
	spec := h.spec("restart", "process")
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	h.awaitStatus(spec.ID, installed(p.Pid))
	p.Stop()
	start := time.Now()
	p2 := h.start()
	h.awaitStatus(spec.ID, installed(p2.Pid))
	took := time.Since(start)
	t.Logf("restarted target traced again %v after it started", took.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Since: start})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		hit, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for a hit from the restarted target: %v", err)
		}
		if hit.Pid == p2.Pid {
			return
		}
	}
}

// A tracepoint over its rate says so in its status, with the count dropped,
// and stays installed; its probe taken out, the count is marked a lower
// bound, with an estimate above it, or none where the probe held the line
// most of the time it was in (at load 24, six stops held it 36 ms of 24,
// counted twice: see agent.Disarm).
func TestThrottledStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := h.start("-every", "1ms")
	spec := h.spec("throttled", "process")
	spec.Limits.MaxHitsPerSecond = 5
	if err := h.c.Declare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	st := h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == p.Pid && ev.State == fleet.StateThrottled })
	if st.Dropped == 0 || !strings.Contains(st.Message, "maxHitsPerSecond=5") || st.Placement == nil {
		t.Fatalf("throttled status = %+v", st.Status)
	}
	// What reached the stream reports the drops too.
	var dropped uint64
	// The first five are the burst; later ones carry the drops before them.
	for _, hit := range h.hits(spec.ID, 8) {
		dropped += hit.Dropped
	}
	if dropped == 0 {
		t.Error("no hit reports the hits dropped before it")
	}
	// Once the allowance is spent the probe comes out until the next
	// second: the status says its count is a lower bound, and estimates.
	st = h.awaitStatus(spec.ID, func(ev fleet.StatusEvent) bool { return ev.Pid == p.Pid && ev.DroppedLowerBound })
	if st.DroppedEstimate != 0 && st.DroppedEstimate <= st.Dropped {
		t.Errorf("a lower bound of %d dropped, estimated at %d: want the estimate above the count, or none", st.Dropped, st.DroppedEstimate)
	}
	t.Logf("a lower bound of %d dropped, estimated at %d (0: none)", st.Dropped, st.DroppedEstimate)
}
