package lsp

import (
	"context"

	"go.lsp.dev/protocol"

	"github.com/riptrace/riptrace/source"
)

// The session's lifecycle: initialize, shutdown and exit, grouped as
// gopls groups them.

// Commands the server executes (workspace/executeCommand).
const (
	CommandShowHits         = "riptrace.showHits"         // [uri, line]: recent hits of a line
	CommandToggleTracepoint = "riptrace.toggleTracepoint" // [uri, line]: declare or remove a tracepoint
	CommandClearHits        = "riptrace.clearHits"        // [uri]?: forget hits of a file, or all
)

func (s *server) Initialize(ctx context.Context, params *protocol.InitializeParams) (*protocol.InitializeResult, error) {
	cfg, err := mergeConfig(s.opts.Config, params.InitializationOptions)
	if err != nil {
		return nil, err
	}
	// Clients that send no workspace folders name their root in the
	// deprecated rootUri.
	//lint:ignore SA1019 the fallback for clients without workspace folders
	rootURI := params.RootURI
	root := "."
	if folders, ok := params.WorkspaceFolders.Get(); ok && len(folders) > 0 {
		root = localPath(folders[0].URI)
	} else if rootURI != nil && *rootURI != "" {
		root = localPath(*rootURI)
	}
	ws, err := source.NewWorkspace(root)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cfg, s.ws = cfg, ws
	if w := params.Capabilities.Workspace; w != nil {
		s.refreshLens = w.CodeLens != nil && w.CodeLens.RefreshSupport != nil && *w.CodeLens.RefreshSupport
		s.refreshHints = w.InlayHint != nil && w.InlayHint.RefreshSupport != nil && *w.InlayHint.RefreshSupport
	}
	s.mu.Unlock()
	s.log.Info("initialize", "root", ws.Root, "module", ws.Module, "nats", cfg.NATS, "refreshLens", s.refreshLens, "refreshHints", s.refreshHints)

	openClose, change := true, protocol.TextDocumentSyncKindIncremental
	result := &protocol.InitializeResult{
		Capabilities: protocol.ServerCapabilities{
			PositionEncoding:  protocol.PositionEncodingKindUTF16,
			TextDocumentSync:  &protocol.TextDocumentSyncOptions{OpenClose: &openClose, Change: &change},
			HoverProvider:     protocol.Boolean(true),
			CodeLensProvider:  &protocol.CodeLensOptions{},
			InlayHintProvider: protocol.Boolean(true),
			ExecuteCommandProvider: protocol.ExecuteCommandOptions{
				Commands: commandNames(),
			},
		},
		ServerInfo: protocol.ServerInfo{Name: "riptrace"},
	}
	if s.opts.Version != "" {
		result.ServerInfo.Version = protocol.NewOptional(s.opts.Version)
	}
	return result, nil
}

// Initialized starts reading the hit stream.
func (s *server) Initialized(ctx context.Context, params *protocol.InitializedParams) error {
	s.restartIngest()
	return nil
}

func commandNames() []string {
	names := make([]string, len(Commands))
	for i, c := range Commands {
		names[i] = c.Name
	}
	return names
}

// Shutdown stops reading hits and removes the tracepoints the editor
// declared; the connection stays up until exit.
func (s *server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	s.stop()
	return nil
}

// Exit ends the session: through opts.Exit when set (riptrace lsp ends the
// process at once, since its reader is blocked on stdin), otherwise by
// closing the connection.
func (s *server) Exit(ctx context.Context) error {
	s.mu.Lock()
	code := 1
	if s.shutdown {
		code = 0
	}
	s.mu.Unlock()
	if s.opts.Exit != nil {
		s.stop()
		s.opts.Exit(code)
		return nil
	}
	// Close waits for handlers to return, this one included.
	go s.conn.Close()
	return nil
}
