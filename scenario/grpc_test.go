package scenario_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/scenario"
)

// grpcScenario runs two copies of the grpcshop target, one serving server
// reflection and one not, each with a tracepoint on its Check.
const grpcScenario = `
services:
  - name: shop
    command: SHOP
    ready: {log: 'READY pid=\d+ addr=(?P<addr>\S+)'}
  - name: bare
    command: SHOP
    args: [-no-reflection]
    ready: {log: 'READY pid=\d+ addr=(?P<addr>\S+)'}
  - name: secure
    command: SHOP
    args: [-tls, CERT]
    ready: {log: 'READY pid=\d+ addr=(?P<addr>\S+)'}
tracepoints:
  - {name: check, service: shop, at: targets/grpcshop/main.go:@check}
  - {name: bare, service: bare, at: targets/grpcshop/main.go:@check}
steps:
  - name: by reflection
    grpc:
      target: ${shop.addr}
      method: grpc.health.v1.Health/Check
      request: '{"service": "shop"}'
      metadata: {caller: scenario}
  - name: an unknown service is NotFound
    grpc: {target: "${shop.addr}", method: grpc.health.v1.Health/Check, request: '{"service": "nope"}', code: NOT_FOUND}
  - name: by proto files
    repeat: 2
    grpc:
      target: ${bare.addr}
      method: /grpc.health.v1.Health/Check
      request: '{"service": "shop"}'
      protos: [grpc/health/v1/health.proto]
      importPaths: [protos]
  - name: over TLS
    grpc: {target: "${secure.addr}", method: grpc.health.v1.Health/Check, request: '{"service": "shop"}', tls: {ca: CERT}}
  - until: {hits: bare, count: 2}
expect:
  - {hits: check, count: "== 2"}
  - {hits: check, where: 'req.Service == "shop"', count: "== 1"}
  - {hits: check, where: 'req.Service == "nope"', count: "== 1"}
  - {hits: bare, where: 'req.Service == "shop"', count: "== 2"}
`

// TestGRPCSteps calls a real gRPC server by server reflection and by proto
// files given in the scenario, checks the status codes and the values the
// calls reached, then checks what each mistake in a gRPC step says.
func TestGRPCSteps(t *testing.T) {
	shop := agenttest.BuildTarget(t, filepath.Join("testdata", "targets", "grpcshop"))
	cert := filepath.Join(t.TempDir(), "cert.pem")
	text := strings.NewReplacer("SHOP", shop, "CERT", cert).Replace(grpcScenario)
	s, err := scenario.Parse([]byte(text), "grpc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir, err = filepath.Abs("testdata"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := scenario.Start(ctx, s, scenario.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Do(ctx, s.Steps...); err != nil {
		t.Fatal(err)
	}
	r.Check(ctx).Report(t)

	call := func(target string, g scenario.GRPCStep) error {
		g.Target = target
		if g.Method == "" {
			g.Method = "grpc.health.v1.Health/Check"
		}
		return r.Do(ctx, scenario.Step{GRPC: &g})
	}
	for _, c := range []struct {
		name   string
		target string
		step   scenario.GRPCStep
		want   []string
	}{
		{"wrong code", "${shop.addr}", scenario.GRPCStep{Request: `{"service":"nope"}`},
			[]string{"step 1: grpc grpc.health.v1.Health/Check on 127.0.0.1:", "answered NotFound after", "want OK", `unknown service "nope"`}},
		{"OK when another code is wanted", "${shop.addr}", scenario.GRPCStep{Request: `{"service":"shop"}`, Code: "Unavailable"},
			[]string{"answered OK", "want Unavailable", `"status":"SERVING"`}},
		{"no reflection", "${bare.addr}", scenario.GRPCStep{},
			[]string{"by server reflection", "give the service's .proto files in protos"}},
		{"bad request", "${shop.addr}", scenario.GRPCStep{Request: `{"servce":"shop"}`},
			[]string{"the request is not a grpc.health.v1.HealthCheckRequest in protobuf's JSON form", "its fields are service"}},
		{"unknown method", "${shop.addr}", scenario.GRPCStep{Method: "grpc.health.v1.Health/Chek"},
			[]string{"service grpc.health.v1.Health has no method Chek: its methods are Check, List, Watch"}},
		{"unknown service", "${shop.addr}", scenario.GRPCStep{Method: "shop.Nothing/Check"},
			[]string{"by server reflection", "shop.Nothing"}},
		{"streaming", "${bare.addr}", scenario.GRPCStep{Method: "grpc.health.v1.Health/Watch", Protos: []string{"protos/grpc/health/v1/health.proto"}},
			[]string{"grpc.health.v1.Health/Watch streams: a step calls unary methods only"}},
		{"nothing there", "127.0.0.1:1", scenario.GRPCStep{},
			[]string{"reaching 127.0.0.1:1", "check that the service is up and serves gRPC there"}},
		{"plaintext to TLS", "${secure.addr}", scenario.GRPCStep{},
			[]string{"answered Unavailable", "whether it wants TLS (tls:)"}},
		{"the wrong server name", "${secure.addr}", scenario.GRPCStep{TLS: &scenario.GRPCTLS{CA: cert, ServerName: "elsewhere"}},
			[]string{"x509: certificate is not valid for any names, but wanted to match elsewhere"}},
		{"untrusted", "${secure.addr}", scenario.GRPCStep{TLS: &scenario.GRPCTLS{}},
			[]string{"certificate signed by unknown authority"}},
		{"no CA file", "${secure.addr}", scenario.GRPCStep{TLS: &scenario.GRPCTLS{CA: "nothing.pem"}},
			[]string{"reading tls.ca", "nothing.pem"}},
		{"missing proto", "${bare.addr}", scenario.GRPCStep{Protos: []string{"nothing.proto"}},
			[]string{"reading the proto files nothing.proto", "nothing.proto"}},
	} {
		err := call(c.target, c.step)
		if err == nil {
			t.Errorf("%s: the step passed", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error does not say %q:\n%v", c.name, w, err)
			}
		}
	}
}

// TestGRPCStepParse checks what a malformed gRPC step says, at its position.
func TestGRPCStepParse(t *testing.T) {
	for _, c := range []struct{ step, want string }{
		{"{grpc: {method: a.B/C}}", "g.yaml:6:12: steps[0].grpc.target: missing: give the server's HOST:PORT"},
		{"{grpc: {target: x, method: Check}}", `steps[0].grpc.method: "Check": write package.Service/Method`},
		{"{grpc: {target: x, method: a.B/C, code: NotFund}}", `steps[0].grpc.code: "NotFund" is not a gRPC status code: write one of OK, Canceled`},
		{"{grpc: {target: x, method: a.B/C, importPaths: [p]}}", "steps[0].grpc.importPaths: without protos they are not read"},
		{"{grpc: {target: x, method: a.B/C, proto: [p]}}", `unknown key "proto": did you mean protos?`},
	} {
		text := "services:\n  - {name: s, command: ./s}\ntracepoints:\n  - {name: hit, service: s, at: s.go:1}\nsteps:\n  - " + c.step + "\n"
		_, err := scenario.Parse([]byte(text), "g.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error saying %q, got %v", c.step, c.want, err)
		}
	}
}
