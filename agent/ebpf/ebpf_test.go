package ebpf_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

const valuesDir = "testdata/targets/values"

func spec(t *testing.T, id string) agent.Tracepoint {
	return agent.Tracepoint{
		ID:       id,
		Location: fleet.Location{Path: "main.go", Line: agenttest.MarkerLine(t, valuesDir+"/main.go", "work")},
		Capture:  fleet.DefaultCapture,
	}
}

func TestSmoke(t *testing.T) {
	if err := ebpf.Available(); err != nil {
		t.Skip(err)
	}
	bin := agenttest.BuildTarget(t, valuesDir, agenttest.NoOpt)
	p := agenttest.Start(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tgt, err := ebpf.New().Attach(ctx, p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := tgt.Set(ctx, spec(t, "w"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("placement %+v", pl)
	h := <-tgt.Hits()
	b, _ := json.MarshalIndent(h, "", " ")
	os.Stdout.Write(b)
	if err := tgt.Detach(ctx); err != nil {
		t.Fatal(err)
	}
}
