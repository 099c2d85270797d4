package recording_test

import (
	"path/filepath"
	"testing"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario/recording"
)

// TestCheckoutFixture checks the recording the debug adapter's and the
// language server's tests replay: it reads, in the order the hits ran,
// and each hit is on the line its tracepoint marks in the demo's sources
// today. When it fails, record it again (testdata/README.md).
func TestCheckoutFixture(t *testing.T) {
	rec, err := recording.Open(filepath.Join("testdata", "checkout.hits.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	placed := rec.Timeline(fleet.TimelineOptions{})
	if rec.Scenario != "checkout" || len(placed) != rec.Hits || rec.Hits != 12 {
		t.Fatalf("want 12 hits of scenario checkout, got %d placed of %d, of %q", len(placed), rec.Hits, rec.Scenario)
	}
	services := map[string]string{"checkout": "gateway", "price": "orders", "charge": "payments"}
	for i, p := range placed {
		if i > 0 && p.CoordinatedTime.Before(placed[i-1].CoordinatedTime) {
			t.Errorf("hit %d (#%d) ran before the hit above it", i, p.Seq)
		}
		svc := services[p.Tracepoint]
		if svc == "" {
			t.Errorf("hit #%d of tracepoint %q, not one of the checkout's", p.Seq, p.Tracepoint)
			continue
		}
		if want := agenttest.MarkerLine(t, filepath.Join("..", "..", "demo", svc, "main.go"), p.Tracepoint); p.Line != want {
			t.Errorf("hit #%d of %s on line %d; demo/%s/main.go marks it on line %d: record the fixture again", p.Seq, p.Tracepoint, p.Line, svc, want)
		}
	}
}
