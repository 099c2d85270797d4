package lsp_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.lsp.dev/protocol"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/lsp"
	"github.com/riptrace/riptrace/scenario/recording"
)

// TestRecordingSetting shows a recording of examples/scenarios/checkout.yaml
// (riptrace run --record) instead of the fleet's hits: lenses, hints and
// hovers on the recorded lines, as live hits make them (each hit named by
// its request, here the masked card), with no NATS server running; tracing
// a line is refused, saying why.
func TestRecordingSetting(t *testing.T) {
	t.Parallel()
	root, _ := filepath.Abs("..")
	const file = "scenario/recording/testdata/checkout.hits.jsonl"
	rec, err := recording.Open(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	var charge fleet.Placed
	for _, p := range rec.Timeline(fleet.TimelineOptions{}) {
		if p.Tracepoint == "charge" {
			charge = p
		}
	}
	s := startSession(t, lsp.Options{Log: testLogger(t)})
	// 1 >> initialize {recording, group}; nothing listens at the NATS URL
	s.initialize(root, map[string]any{"recording": file, "nats": "nats://127.0.0.1:1", "group": []string{"masked"}})

	// 2 >> didOpen demo/payments/main.go
	src := filepath.Join(root, "demo", "payments", "main.go")
	u, text := s.open(src)
	line := charge.Line - 1

	// 3 >> codeLens, << the recorded charges
	s.awaitLens(u, line, regexp.MustCompile(`^● 4 hits · 1 host · last \d+[smhd] ago$`))

	// 4 >> inlayHint, << the last charge's values
	hints, err := s.server.InlayHint(ctx(t), &protocol.InlayHintParams{
		TextDocument: protocol.TextDocumentIdentifier{URI: u},
		Range:        protocol.Range{End: protocol.Position{Line: uint32(strings.Count(text, "\n") + 1)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, h := range hints {
		if int(h.Position.Line) == line {
			labels = append(labels, string(h.Label.(protocol.String)))
		}
	}
	if !strings.Contains(strings.Join(labels, " "), "req=") {
		t.Errorf("hints on the charge line: %q, want the recorded req", labels)
	}

	// 5 >> hover, << the recorded hits of the run's host
	hov, err := s.server.Hover(ctx(t), &protocol.HoverParams{TextDocumentPositionParams: protocol.TextDocumentPositionParams{
		TextDocument: protocol.TextDocumentIdentifier{URI: u}, Position: protocol.Position{Line: uint32(line)},
	}})
	if err != nil || hov == nil {
		t.Fatalf("hover: %v, %v", hov, err)
	}
	if md := hov.Contents.(*protocol.MarkupContent).Value; !strings.Contains(md, "**"+charge.Host+"**") || !strings.Contains(md, "payments[") {
		t.Errorf("hover does not list host %s and payments:\n%s", charge.Host, md)
	} else if !strings.Contains(md, "g"+strconv.FormatInt(charge.Goroutine, 10)+" · request `**** 0002`") {
		t.Errorf("hover does not name the request of the last charge, its masked card:\n%s", md)
	}

	// 6 >> executeCommand riptrace.toggleTracepoint, << refused: a
	// recording traces nothing
	arg := func(v any) protocol.LSPAny { b, _ := json.Marshal(v); return b }
	_, err = s.server.ExecuteCommand(ctx(t), &protocol.ExecuteCommandParams{Command: lsp.CommandToggleTracepoint, Arguments: []protocol.LSPAny{arg(string(u)), arg(line)}})
	if err == nil || !strings.Contains(err.Error(), "the riptrace setting recording shows "+file+", and nothing is traced: clear it to trace lines") {
		t.Errorf("toggleTracepoint during a replay: want it refused saying why, got %v", err)
	}
}
