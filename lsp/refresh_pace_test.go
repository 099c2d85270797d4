package lsp_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/lsp"
)

// vscodeLensResolveDelay is how long VS Code's code lens controller waits,
// after each textDocument/codeLens answer, before it puts the answered
// titles on screen (the CodeLensResolve debounce of codelensController.ts:
// 1.5 × its 250 ms minimum until a first resolve completes). Every answer
// restarts that wait, so refreshes closer together than this keep the lens
// at its first title forever: the bug make e2e-vscode caught.
const vscodeLensResolveDelay = 375 * time.Millisecond

// TestRefreshPaceLetsVSCodeRender: with the default options, hits arriving
// every 50ms through a real NATS server yield refresh requests over the
// real protocol connection spaced at least vscodeLensResolveDelay apart,
// and the lens the client then fetches follows the count.
func TestRefreshPaceLetsVSCodeRender(t *testing.T) {
	t.Parallel()
	ns := fleettest.RunServer(t)
	c := fleettest.Connect(t, ns)
	dir := t.TempDir()
	file := filepath.Join(dir, "main.go")
	src := "package main\n\nfunc main() {\n\tcharge(1)\n}\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startSession(t, lsp.Options{Log: testLogger(t)})
	s.initialize(dir, map[string]any{"nats": ns.ClientURL(), "history": "1m"})
	u := uri.File(file)
	if err := s.server.DidOpen(ctx(t), &protocol.DidOpenTextDocumentParams{TextDocument: protocol.TextDocumentItem{URI: u, LanguageID: "go", Version: 1, Text: src}}); err != nil {
		t.Fatal(err)
	}

	// Hits every 50ms until the test ends, as a busy service sends them.
	hctx, stop := context.WithCancel(context.Background())
	published := make(chan struct{})
	defer func() {
		stop()
		<-published
	}()
	go func() {
		defer close(published)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			h := syntheticHit(i)
			h.Host, h.File, h.Line, h.Seq, h.ServerTime = "pace", file, 4, 0, time.Time{}
			if err := c.PublishHit(hctx, &h.Hit); err != nil {
				if hctx.Err() == nil {
					t.Errorf("publishing hit %d: %v", i, err)
				}
				return
			}
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	const want = 5
	var times []time.Time
	for len(times) < want {
		select {
		case at := <-s.client.lensRefresh:
			times = append(times, at)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d workspace/codeLens/refresh within 30s of the last while hits arrive every 50ms, want %d", len(times), want)
		}
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < vscodeLensResolveDelay {
			t.Errorf("refresh %d came %v after the previous one: under %v, VS Code never shows the new lens titles", i+1, gap, vscodeLensResolveDelay)
		}
	}
	// What the client fetches after those refreshes has the count moving on.
	s.awaitLens(u, 3, regexp.MustCompile(`^● ([2-9]\d|\d{3,}) hits · 1 host`))
}
