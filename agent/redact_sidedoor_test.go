package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

const secretsDir = "testdata/targets/secrets"

var secretsSrc = filepath.Join(secretsDir, "main.go")

// targetSecrets are the secrets the secrets target holds (its constants);
// none may appear in a hit.
var targetSecrets = []string{
	"sk-live-4f9a2c7e1b8d",              // Config.APIKey
	"hunter2",                           // Config.Password, password
	"c2lnLWFsaWNlLTc3",                  // jwt's signature
	"bt-9c1d2e3f4a5b6c7d",               // bearer, Authorization, inside raw
	"xk-7e6d5c4b3a29",                   // the X-Api-Key header
	"eyJzdWIiOiJib2IifQ.c2lnLWJvYi04OA", // the JWT inside session=…
}

// TestRedactionSideDoors tries every side door found around redaction, on
// each backend, against a real agent and target: log messages that render
// a struct or a secret local, a condition or an expression on a redacted
// name, and pointer arithmetic. No secret of the target may leave in a
// hit, and each refusal is said on the tracepoint's status with its code.
func TestRedactionSideDoors(t *testing.T) {
	backends := []string{agent.BackendDelve}
	if err := ebpf.Available(); err == nil {
		backends = append(backends, agent.BackendEBPF)
	} else {
		t.Logf("the eBPF backend is not available here (%v): Delve alone", err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testSideDoors(t, backend)
		})
	}
}

func testSideDoors(t *testing.T, backend string) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	// Straight into the bucket, as no client would write them.
	_, js := fleettest.Raw(t, s)
	tps, err := js.KeyValue(context.Background(), c.Subjects().TracepointBucket())
	if err != nil {
		t.Fatal(err)
	}
	n := hostSeq.Add(1)
	host, exe := fmt.Sprintf("redact-%d", n), fmt.Sprintf("secrets-test-%d-%d", os.Getpid(), n)
	bin := agenttest.Alias(t, agenttest.BuildTarget(t, secretsDir, agenttest.NoOpt), exe)
	var log syncBuffer
	cfg := agent.Config{Host: host, Processes: []string{exe}}
	var eb agent.Backend
	if backend == agent.BackendEBPF {
		eb = ebpf.New()
	}
	agenttest.RunAgentWith(t, s, cfg, &log, eb)
	p := agenttest.Start(t, bin)
	ctx := context.Background()
	line := agenttest.MarkerLine(t, secretsSrc, "handle")
	spec := func(id string) *fleet.Spec {
		return &fleet.Spec{
			ID:       id,
			Location: fleet.Location{Path: "secrets/main.go", Line: line},
			Capture:  fleet.DefaultCapture,
			Limits:   fleet.Limits{MaxHitsPerSecond: 100},
			Backend:  backend,
		}
	}
	await := func(id string, ok func(fleet.StatusEvent) bool) fleet.StatusEvent {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		ch, err := c.WatchStatus(wctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for ev := range ch {
			if ok(ev) {
				return ev
			}
			seen = append(seen, fmt.Sprintf("%+v", ev))
		}
		t.Fatalf("no matching status of %s; saw:\n%s\nagent log:\n%s", id, strings.Join(seen, "\n"), log.String())
		return fleet.StatusEvent{}
	}

	// 1. What is read without naming a secret shows, redacted: the locals,
	// expressions on the composites that hold secrets, and a log message
	// that renders them. A condition that reads no secret still works.
	open := spec("open")
	open.Condition = "n % 2 == 0"
	open.Capture.Exprs = []string{"cfg", "hdr", "note", "raw"}
	open.LogMessage = "cfg={cfg} jwt={jwt} bearer={bearer} note={note} raw={raw} hdr={hdr} host={host}"
	if err := c.Declare(ctx, open); err != nil {
		t.Fatal(err)
	}
	await(open.ID, installed(p.Pid))
	hr, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{open.ID}, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Close()
	for i := 0; i < 3; i++ {
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		hit, err := hr.Next(rctx)
		cancel()
		if err != nil {
			t.Fatalf("reading hit %d: %v", i+1, err)
		}
		all, _ := json.Marshal(hit)
		for _, secret := range targetSecrets {
			if strings.Contains(string(all), secret) {
				t.Errorf("%s left the host in a hit: %s", secret, all)
			}
		}
		if !strings.Contains(hit.Message, "host=db.internal") || !strings.Contains(hit.Message, "jwt="+agent.Redacted) || !strings.Contains(hit.Message, "bearer="+agent.Redacted) || !strings.Contains(hit.Message, "note="+agent.Redacted) || !strings.Contains(hit.Message, "raw="+agent.Redacted) {
			t.Errorf("log message %q: want host=db.internal and jwt, bearer, note and raw redacted", hit.Message)
		}
		if !strings.Contains(hit.Message, `Host: "db.internal"`) || !strings.Contains(hit.Message, "APIKey: "+agent.Redacted) {
			t.Errorf("log message %q: want cfg's Host shown and its APIKey redacted", hit.Message)
		}
		for _, name := range []string{"password", "jwt", "bearer", "note", "raw"} {
			if v := fleettest.Var(hit.Locals, name); v == nil || v.Value != agent.Redacted {
				t.Errorf("local %s = %+v, want %s", name, v, agent.Redacted)
			}
		}
		if len(hit.Exprs) != 4 {
			t.Fatalf("exprs = %+v, want cfg, hdr, note and raw alone", hit.Exprs)
		}
		if cfg := hit.Exprs[0]; fleettest.Var(cfg.Children, "APIKey") == nil || fleettest.Var(cfg.Children, "APIKey").Value != agent.Redacted || fleettest.Var(cfg.Children, "Host").Value != `"db.internal"` {
			t.Errorf("expression cfg = %+v, want Host shown and APIKey redacted", cfg)
		}
		// The Delve backend reads maps; the eBPF one says it did not copy
		// them.
		if hdr := hit.Exprs[1]; backend == agent.BackendDelve {
			for _, key := range []string{`["X-Api-Key"]`, `["Authorization"]`} {
				if v := fleettest.Var(hdr.Children, key); v == nil || v.Value != agent.Redacted {
					t.Errorf("hdr%s = %+v, want %s", key, v, agent.Redacted)
				}
			}
			// Redacted by its value: the JWT inside session=….
			if v := fleettest.Var(hdr.Children, `["X-Session"]`); v == nil || len(v.Children) != 1 || v.Children[0].Value != agent.Redacted {
				t.Errorf(`hdr["X-Session"] = %+v, want its one value %s`, v, agent.Redacted)
			}
			if v := fleettest.Var(hdr.Children, `["Accept"]`); v == nil || !strings.Contains(v.Value, "*/*") {
				t.Errorf(`hdr["Accept"] = %+v, want */*`, v)
			}
			// Keyed by a JWT: the key is the secret.
			if v := fleettest.Var(hit.Locals, "sessions"); v == nil || len(v.Children) != 1 || v.Children[0].Name != "["+agent.Redacted+"]" {
				t.Errorf("sessions = %+v, want its one entry's key %s", v, agent.Redacted)
			}
		}
	}

	// 2. Conditions, expressions and log messages that read a redacted
	// name are refused by the agent, which alone knows what it redacts.
	for i, tc := range []struct{ cond, expr, log string }{
		{cond: `password == "hunter2"`},
		{cond: `password[0] == 104`},
		{cond: `len(cfg.Password) == 7`},
		{cond: `cfg.APIKey[3:7] == "live"`},
		{cond: `hdr["X-Api-Key"][0] != ""`},
		{cond: `[]byte(hdr["Authorization"][0])[0] == 66`},
		{expr: `cfg.APIKey`},
		{log: `key={cfg.APIKey}`},
	} {
		sp := spec(fmt.Sprintf("secret-%d", i))
		sp.Condition, sp.LogMessage = tc.cond, tc.log
		if tc.expr != "" {
			sp.Capture.Exprs = []string{tc.expr}
		}
		if err := c.Declare(ctx, sp); err != nil {
			t.Fatalf("declaring %+v: %v", tc, err)
		}
		st := await(sp.ID, func(ev fleet.StatusEvent) bool { return ev.State == fleet.StateError })
		if st.Code != fleet.CodeRedacted || !strings.Contains(st.Message, "redacts") {
			t.Errorf("%+v: status %s %q, want %s saying what it reads", tc, st.Code, st.Message, fleet.CodeRedacted)
		}
	}

	// 3. Pointer arithmetic is refused at declare time, and by the agent
	// when a spec reaches the bucket without the client's check.
	for i, sp := range []*fleet.Spec{spec("unsafe-0"), spec("unsafe-1"), spec("unsafe-2")} {
		arith := `*(*string)(uintptr(cfg)+16)`
		switch i {
		case 0:
			sp.Capture.Exprs = []string{arith}
		case 1:
			sp.Condition = arith + ` == "sk"`
		case 2:
			sp.LogMessage = "{" + arith + "}"
		}
		var fe *fleet.Error
		if err := c.Declare(ctx, sp); !errors.As(err, &fe) || fe.Code != fleet.CodeUnsafeExpr {
			t.Errorf("declaring %+v: %v, want %s", sp, err, fleet.CodeUnsafeExpr)
		}
		if _, err := tps.Put(ctx, sp.ID, fleet.Encode(sp)); err != nil {
			t.Fatal(err)
		}
		st := await(sp.ID, func(ev fleet.StatusEvent) bool { return ev.State == fleet.StateError })
		if st.Code != fleet.CodeUnsafeExpr || !strings.Contains(st.Message, "uintptr") {
			t.Errorf("%s: status %s %q, want %s naming uintptr", sp.ID, st.Code, st.Message, fleet.CodeUnsafeExpr)
		}
	}
	if !p.Alive() {
		t.Fatalf("the target died: %s", p.Stderr())
	}
}
