package lsp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/lsp"
)

// recordingClient is the editor's side: it records refresh requests.
type recordingClient struct {
	protocol.UnimplementedClient
	lensRefresh chan time.Time
	hintRefresh chan time.Time
	messages    chan string
}

func newRecordingClient() *recordingClient {
	return &recordingClient{lensRefresh: make(chan time.Time, 1024), hintRefresh: make(chan time.Time, 1024), messages: make(chan string, 64)}
}

func (c *recordingClient) CodeLensRefresh(ctx context.Context) error {
	c.lensRefresh <- time.Now()
	return nil
}

func (c *recordingClient) InlayHintRefresh(ctx context.Context) error {
	c.hintRefresh <- time.Now()
	return nil
}

func (c *recordingClient) ShowMessage(ctx context.Context, p *protocol.ShowMessageParams) error {
	select {
	case c.messages <- p.Message:
	default:
	}
	return nil
}

func (c *recordingClient) LogMessage(ctx context.Context, p *protocol.LogMessageParams) error {
	return nil
}

// session is an in-process editor connected over a pipe to lsp.Serve.
type session struct {
	t      testing.TB
	server protocol.Server
	client *recordingClient
	conn   jsonrpc2.Conn
	served chan error
}

// open reads the file at path and sends didOpen for it, returning its URI
// and text.
func (s *session) open(path string) (uri.URI, string) {
	s.t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	u := uri.File(path)
	if err := s.server.DidOpen(ctx(s.t), &protocol.DidOpenTextDocumentParams{TextDocument: protocol.TextDocumentItem{URI: u, LanguageID: "go", Version: 1, Text: string(text)}}); err != nil {
		s.t.Fatal(err)
	}
	return u, string(text)
}

// startSession serves the language server on one end of a pipe and
// connects a protocol client to the other.
func startSession(t testing.TB, opts lsp.Options) *session {
	t.Helper()
	a, b := net.Pipe()
	s := &session{t: t, client: newRecordingClient(), served: make(chan error, 1)}
	go func() { s.served <- lsp.Serve(context.Background(), lsp.NewStream(a), opts) }()
	_, s.conn, s.server = protocol.NewClient(context.Background(), s.client, jsonrpc2.NewStream(b))
	t.Cleanup(func() {
		s.conn.Close()
		select {
		case <-s.served:
		case <-time.After(30 * time.Second):
			t.Error("lsp.Serve did not return within 30s of the client closing")
		}
	})
	return s
}

func (s *session) initialize(root string, options map[string]any) *protocol.InitializeResult {
	s.t.Helper()
	opts, _ := json.Marshal(options)
	rootURI := uri.File(root)
	yes := true
	res, err := s.server.Initialize(ctx(s.t), &protocol.InitializeParams{
		//lint:ignore SA1019 the root as clients without workspace folders send it
		RootURI:               &rootURI,
		InitializationOptions: opts,
		Capabilities: protocol.ClientCapabilities{Workspace: &protocol.WorkspaceClientCapabilities{
			CodeLens:  &protocol.CodeLensWorkspaceClientCapabilities{RefreshSupport: &yes},
			InlayHint: &protocol.InlayHintWorkspaceClientCapabilities{RefreshSupport: &yes},
		}},
	})
	if err != nil {
		s.t.Fatalf("initialize: %v", err)
	}
	if err := s.server.Initialized(ctx(s.t), &protocol.InitializedParams{}); err != nil {
		s.t.Fatalf("initialized: %v", err)
	}
	return res
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// awaitLens polls textDocument/codeLens until a lens is on line (0-based)
// and its title matches re.
func (s *session) awaitLens(u uri.URI, line int, re *regexp.Regexp) protocol.CodeLens {
	s.t.Helper()
	var found protocol.CodeLens
	testsupport.CheckFor(s.t, 30*time.Second, 50*time.Millisecond, func() error {
		lenses, err := s.server.CodeLens(ctx(s.t), &protocol.CodeLensParams{TextDocument: protocol.TextDocumentIdentifier{URI: u}})
		if err != nil {
			return err
		}
		var seen []string
		for _, l := range lenses {
			seen = append(seen, fmt.Sprintf("%d: %s", l.Range.Start.Line, l.Command.Title))
			if int(l.Range.Start.Line) == line && re.MatchString(l.Command.Title) {
				found = l
				return nil
			}
		}
		return fmt.Errorf("no lens on line %d matching %s; lenses: %v", line, re, seen)
	})
	return found
}

// TestLiveHits drives the server as an editor would, against a real NATS
// server, a real agent and a real target process: it traces a line with
// riptrace.toggleTracepoint, sees refreshes, lenses, hints and hovers
// arrive from real hits, edits the buffer above the line and sees them
// follow it, then removes the tracepoint.
func TestLiveHits(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	s := startSession(t, lsp.Options{Log: testLogger(t)})

	// 1 >> initialize, << capabilities
	res := s.initialize(e.dir, map[string]any{"nats": e.url, "processes": []string{e.exe}, "history": "1m"})
	if res.Capabilities.InlayHintProvider == nil || res.Capabilities.CodeLensProvider == nil || res.Capabilities.HoverProvider == nil {
		t.Fatalf("capabilities lack lenses, hints or hovers: %+v", res.Capabilities)
	}

	// 2 >> didOpen loop/main.go
	u, text := s.open(e.src)

	// 3 >> executeCommand riptrace.toggleTracepoint, << traced (once the
	// server reached NATS)
	line := e.line - 1
	toggle := func() map[string]any {
		var out map[string]any
		testsupport.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			r, err := s.server.ExecuteCommand(ctx(t), &protocol.ExecuteCommandParams{
				Command:   lsp.CommandToggleTracepoint,
				Arguments: []protocol.LSPAny{mustJSON(string(u)), mustJSON(line)},
			})
			if err != nil {
				return err
			}
			return json.Unmarshal(r, &out)
		})
		return out
	}
	tp := toggle()
	if tp["traced"] != true {
		t.Fatalf("toggleTracepoint: %v, want traced", tp)
	}

	// 4 << workspace/codeLens/refresh and workspace/inlayHint/refresh
	for name, ch := range map[string]chan time.Time{"codeLens": s.client.lensRefresh, "inlayHint": s.client.hintRefresh} {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("no workspace/%s/refresh within 30s of tracing a line that runs every 5ms", name)
		}
	}

	// 5 >> codeLens, << `● N hits · 1 host · last …`
	lens := s.awaitLens(u, line, regexp.MustCompile(`^● \d+ hits? · 1 host · last \d+s ago$`))
	if lens.Command.Command != lsp.CommandShowHits {
		t.Errorf("lens command %q, want %s", lens.Command.Command, lsp.CommandShowHits)
	}

	// 6 >> inlayHint, << every value at the end of the line: `it` starts the
	// selector it.Meta, which a hint after it would split
	src := strings.Split(text, "\n")[line]
	hints, err := s.server.InlayHint(ctx(t), &protocol.InlayHintParams{
		TextDocument: protocol.TextDocumentIdentifier{URI: u},
		Range:        protocol.Range{End: protocol.Position{Line: uint32(len(strings.Split(text, "\n")))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var atEnd string
	for _, h := range hints {
		if int(h.Position.Line) != line {
			t.Errorf("hint on line %d, want only line %d: %+v", h.Position.Line, line, h)
			continue
		}
		label := string(h.Label.(protocol.String))
		if int(h.Position.Character) != len(src) {
			t.Errorf("hint %q at column %d of %q, want it at the end of the line (%d)", label, h.Position.Character, src, len(src))
			continue
		}
		atEnd = label
	}
	if !strings.HasPrefix(atEnd, "it=") || !regexp.MustCompile(`\bn=\d+\b`).MatchString(atEnd) {
		t.Errorf("hints on %q: at the end %q; want it=<value> and n=<int> …; all: %+v", src, atEnd, hints)
	}

	// 7 >> hover, << recent hits of this host
	hov, err := s.server.Hover(ctx(t), &protocol.HoverParams{TextDocumentPositionParams: protocol.TextDocumentPositionParams{
		TextDocument: protocol.TextDocumentIdentifier{URI: u}, Position: protocol.Position{Line: uint32(line)},
	}})
	if err != nil || hov == nil {
		t.Fatalf("hover: %v, %v", hov, err)
	}
	if md := hov.Contents.(*protocol.MarkupContent).Value; !strings.Contains(md, "**"+e.host+"**") || !strings.Contains(md, e.exe+"[") {
		t.Errorf("hover does not list host %s and process %s:\n%s", e.host, e.exe, md)
	}

	// 7b >> hover over `it`, << only its values
	col := strings.Index(src, "it.Meta")
	hov, err = s.server.Hover(ctx(t), &protocol.HoverParams{TextDocumentPositionParams: protocol.TextDocumentPositionParams{
		TextDocument: protocol.TextDocumentIdentifier{URI: u}, Position: protocol.Position{Line: uint32(line), Character: uint32(col + 1)},
	}})
	if err != nil || hov == nil {
		t.Fatalf("hover over it: %v, %v", hov, err)
	}
	if md := hov.Contents.(*protocol.MarkupContent).Value; !strings.Contains(md, "— `it`") || !strings.Contains(md, ": `it=") || strings.Contains(md, " n=") {
		t.Errorf("hover over it does not show only it's values:\n%s", md)
	}

	// 7c >> executeCommand riptrace.showHits (the lens's command), << Markdown
	r, err := s.server.ExecuteCommand(ctx(t), &protocol.ExecuteCommandParams{Command: lens.Command.Command, Arguments: lens.Command.Arguments})
	if err != nil {
		t.Fatal(err)
	}
	var md string
	if err := json.Unmarshal(r, &md); err != nil || !strings.Contains(md, "**"+e.host+"**") {
		t.Errorf("showHits: %q, %v; want the recent hits of host %s", r, err, e.host)
	}

	// 8 >> didChange: two lines inserted at the top; the lens follows.
	if err := s.server.DidChange(ctx(t), &protocol.DidChangeTextDocumentParams{
		TextDocument:   protocol.VersionedTextDocumentIdentifier{TextDocumentIdentifier: protocol.TextDocumentIdentifier{URI: u}, Version: 2},
		ContentChanges: []protocol.TextDocumentContentChangeEvent{&protocol.TextDocumentContentChangePartial{Text: "// one\n// two\n"}},
	}); err != nil {
		t.Fatal(err)
	}
	s.awaitLens(u, line+2, regexp.MustCompile(`^● \d+ hits`))

	// 9 >> executeCommand riptrace.toggleTracepoint on the moved line:
	// the same tracepoint, removed from the fleet.
	line += 2
	if tp2 := toggle(); tp2["traced"] != false || tp2["id"] != tp["id"] {
		t.Fatalf("second toggle: %v, want the tracepoint %v removed", tp2, tp["id"])
	}
	specs, err := e.c.Tracepoints(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 0 {
		t.Errorf("tracepoints still declared after the toggle removed them: %+v", specs)
	}

	// 10 >> shutdown, >> exit: the connection ends.
	if err := s.server.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	s.server.Exit(ctx(t))
	select {
	case err := <-s.served:
		s.served <- err
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of exit")
	}
}

func mustJSON(v any) protocol.LSPAny {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
