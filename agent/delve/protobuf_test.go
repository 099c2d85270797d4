package delve_test

import (
	"context"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
)

// grpcsvcDir is a real gRPC health service, a module of its own, whose
// handler receives a protoc-generated message.
const grpcsvcDir = "../../bench/grpcsvc"

// TestProtobufMessageByFields traces the gRPC service's Check handler and
// reads its request, a *healthpb.HealthCheckRequest: the value renders by
// its one field, Service, and neither the value nor its children show the
// protobuf runtime's state, sizeCache or unknownFields.
func TestProtobufMessageByFields(t *testing.T) {
	t.Parallel()
	// The main package built without optimizations, where the optimized
	// handler no longer holds req at the marked line; its dependencies
	// optimized, as built once for every test (gRPC unoptimized takes
	// minutes).
	bin := agenttest.BuildTarget(t, grpcsvcDir, "-gcflags=-N -l")
	p := agenttest.Start(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tg, err := delve.New(io.Discard).Attach(ctx, p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	agenttest.DetachAtCleanup(t, tg)
	spec := fleet.Spec{
		ID:       "check",
		Location: fleet.Location{Path: "grpcsvc/main.go", Line: agenttest.MarkerLine(t, grpcsvcDir+"/main.go", "handle")},
		Capture:  fleet.Capture{Args: true, Exprs: []string{"*req"}},
	}
	if _, err := tg.Set(ctx, spec); err != nil {
		t.Fatal(err)
	}
	call := exec.Command(p.Cmd.Path, "-check", p.Addr)
	if out, err := call.CombinedOutput(); err != nil {
		t.Fatalf("calling Check: %v\n%s", err, out)
	}
	var h fleet.Hit
	select {
	case got := <-tg.Hits():
		if got.Fault != nil {
			t.Fatal(got.Fault)
		}
		h = got.Hit
	case <-time.After(60 * time.Second):
		t.Fatal("no hit of Check within 60s")
	}
	var vals []fleet.Variable
	for _, v := range h.Args {
		if v.Name == "req" {
			vals = append(vals, v)
		}
	}
	vals = append(vals, h.Exprs...)
	if len(vals) != 2 {
		t.Fatalf("hit has no req argument or *req expression: args %+v, exprs %+v", h.Args, h.Exprs)
	}
	for _, v := range vals {
		t.Logf("%s = %s", v.Name, v.Value)
		if !strings.Contains(v.Value, `{Service: "bench"}`) {
			t.Errorf("%s = %s, want the message by its fields: {Service: \"bench\"}", v.Name, v.Value)
		}
		var names []string
		for _, c := range v.Children {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, []string{"Service"}) {
			t.Errorf("%s has children %q, want only Service", v.Name, names)
		}
	}
}
