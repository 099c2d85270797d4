package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"
)

// lspServer is a real language server (`riptrace lsp` over stdio) driven
// as an editor would, through an LSP client: its workspace is the
// checkout, the checkout's file is open, and its code lenses (hit counts)
// and inlay hints (last values) are asked for. It reads every hit of the
// stream, as an editor's language server does.
type lspServer struct {
	cmd    *exec.Cmd
	conn   jsonrpc2.Conn
	server protocol.Server
	doc    uri.URI
	client *lspClient
}

// lspClient is the editor's side: it keeps what the server shows the user.
type lspClient struct {
	protocol.UnimplementedClient

	// mu guards messages.
	mu       sync.Mutex
	messages []string // window/showMessage, the first few
}

func (c *lspClient) ShowMessage(ctx context.Context, p *protocol.ShowMessageParams) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.messages) < 5 {
		c.messages = append(c.messages, p.Message)
	}
	return nil
}

func (c *lspClient) LogMessage(ctx context.Context, p *protocol.LogMessageParams) error { return nil }

// said returns what the server showed the user.
func (c *lspClient) said() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.messages, "; ")
}

// lspPipe is the server's stdio as the client's stream.
type lspPipe struct {
	io.Reader
	io.WriteCloser
}

// startLSP starts the language server on the fleet at url, with the
// checkout as its workspace and its file open.
func startLSP(url string, co checkout) (*lspServer, error) {
	l := &lspServer{client: &lspClient{}, doc: uri.File(co.file)}
	l.cmd = exec.Command(*bin, "lsp")
	l.cmd.Stderr = io.Discard // its log: the editor's output panel
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := l.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := l.cmd.Start(); err != nil {
		return nil, err
	}
	_, l.conn, l.server = protocol.NewClient(context.Background(), l.client, jsonrpc2.NewStream(lspPipe{out, in}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The hits of the last 10 minutes and then live ones: every run's,
	// as the runs start after the server.
	opts, _ := json.Marshal(map[string]any{"nats": url, "history": "10m"})
	params := &protocol.InitializeParams{InitializationOptions: opts}
	params.WorkspaceFolders = protocol.NewNullable([]protocol.WorkspaceFolder{{URI: uri.File(co.dir), Name: "shop"}})
	text, err := os.ReadFile(co.file)
	if err == nil {
		_, err = l.server.Initialize(ctx, params)
	}
	if err == nil {
		err = l.server.Initialized(ctx, &protocol.InitializedParams{})
	}
	if err == nil {
		err = l.server.DidOpen(ctx, &protocol.DidOpenTextDocumentParams{TextDocument: protocol.TextDocumentItem{URI: l.doc, LanguageID: "go", Version: 1, Text: string(text)}})
	}
	if err != nil {
		l.stop()
		return nil, fmt.Errorf("starting the language server: %w", err)
	}
	return l, nil
}

// lensRE reads the count of a lens title, `● 128 hits · 3 hosts · last 2s ago`.
var lensRE = regexp.MustCompile(`^● (\d+) hits? `)

// count returns the hit count the code lens of line (1-based) shows, 0
// when it has none.
func (l *lspServer) count(ctx context.Context, line int) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lenses, err := l.server.CodeLens(ctx, &protocol.CodeLensParams{TextDocument: protocol.TextDocumentIdentifier{URI: l.doc}})
	if err != nil {
		return 0, fmt.Errorf("asking the language server for code lenses: %w", err)
	}
	for _, lens := range lenses {
		if int(lens.Range.Start.Line) != line-1 {
			continue
		}
		m := lensRE.FindStringSubmatch(lens.Command.Title)
		if m == nil {
			return 0, fmt.Errorf("the lens of line %d says %q, not a count of hits", line, lens.Command.Title)
		}
		return strconv.ParseInt(m[1], 10, 64)
	}
	return 0, nil
}

// values returns the inlay hints of line (1-based): the last hit's
// values, as the editor draws them at the end of the line.
func (l *lspServer) values(ctx context.Context, line int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	at := protocol.Position{Line: uint32(line - 1)}
	hints, err := l.server.InlayHint(ctx, &protocol.InlayHintParams{TextDocument: protocol.TextDocumentIdentifier{URI: l.doc}, Range: protocol.Range{Start: at, End: at}})
	if err != nil {
		return "", fmt.Errorf("asking the language server for inlay hints: %w", err)
	}
	var labels []string
	for _, h := range hints {
		switch l := h.Label.(type) {
		case protocol.String:
			labels = append(labels, string(l))
		case *protocol.String:
			labels = append(labels, string(*l))
		default:
			b, _ := protocol.Marshal(l)
			labels = append(labels, string(b))
		}
	}
	return strings.Join(labels, " "), nil
}

// cpu is the server's CPU seconds so far.
func (l *lspServer) cpu() float64 { return procCPU(l.cmd.Process.Pid) }

// stop shuts the server down as an editor does, and ends it.
func (l *lspServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if l.server != nil && l.server.Shutdown(ctx) == nil {
		l.server.Exit(ctx)
	}
	if l.conn != nil {
		l.conn.Close()
	}
	l.cmd.Process.Kill()
	l.cmd.Wait()
}
