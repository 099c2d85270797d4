package lsp

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// DefaultRefreshEvery is the least time between two refresh requests to the
// client. The first hit after a quiet spell is refreshed at once; while hits
// keep coming, at most one refresh a second goes out.
//
// Faster starves VS Code: its code lens controller re-fetches lenses some
// 250 ms after a refresh, and after every fetch restarts a timer (375 ms at
// first, then adaptive with 250 ms the least) that, when it fires, puts the
// fetched titles on screen. Refreshes 300 ms apart restart that timer before
// it fires, so the lens kept its first title while the hits ran on; 500 ms
// apart still did on a loaded machine (a fresh-clone CI run); 1 s apart
// every fetch is drawn.
const DefaultRefreshEvery = time.Second

// Options configure Serve.
type Options struct {
	// Log receives the server's log; nil discards it. Never stdout.
	Log *slog.Logger
	// Exit is called when the client sends exit, with 0 if shutdown came
	// first and 1 otherwise. `riptrace lsp` ends the process there, since
	// its reader is blocked on stdin; nil closes the connection instead.
	Exit func(code int)
	// Config is the configuration before initializationOptions apply.
	Config Config
	// RefreshEvery throttles refresh requests (DefaultRefreshEvery if 0).
	RefreshEvery time.Duration
	// Version is reported as serverInfo.version.
	Version string
	// Now is the clock of lenses and hovers ("last 2s ago"); nil is
	// time.Now.
	Now func() time.Time
}

// server is one connection's language server.
//
// Goroutines: the connection's reader (notifications run on it in wire
// order; requests are released to run concurrently), the ingester (reads
// the hit stream into agg, restarted when the configuration changes) and
// the refresher (sends throttled refresh requests after agg changes).
type server struct {
	protocol.UnimplementedServer

	opts   Options
	log    *slog.Logger
	agg    *Aggregate
	conn   jsonrpc2.Conn
	client protocol.Client
	// changed is signalled (never blocking) when agg changes.
	changed chan struct{}
	// done is closed when the connection ends.
	done chan struct{}

	// declMu serializes declaring and removing toggled tracepoints: a
	// toggle and a remap (follow.go).
	declMu sync.Mutex

	// mu guards the fields below.
	mu           sync.Mutex
	cfg          Config
	ws           *source.Workspace
	docs         map[string]*document // by local path
	refreshLens  bool                 // the client accepts workspace/codeLens/refresh
	refreshHints bool                 // the client accepts workspace/inlayHint/refresh
	shutdown     bool
	lease        *fleet.Lease           // the tracepoints toggled from the editor
	fleet        *fleet.Client          // lease's connection, set with it
	toggled      map[string]toggledLine // by tracepoint id: lease's, followed as revisions start
	stopIngest   context.CancelFunc
	ingestDone   chan struct{}
}

// Serve serves the language server on stream until the connection ends
// (the client closes it, or sends exit when opts.Exit is nil) or ctx is
// done. Tracepoints the editor declared are removed before it returns.
func Serve(ctx context.Context, stream jsonrpc2.Stream, opts Options) error {
	s := newServer(opts)
	s.conn = jsonrpc2.NewConn(stream, jsonrpc2.WithCodec(codec{}))
	s.client = protocol.ClientDispatcher(s.conn)
	methods := protocol.ServerHandler(s, jsonrpc2.MethodNotFoundHandler)
	handler := protocol.CancelHandler(func(ctx context.Context, req *jsonrpc2.Request) (any, error) {
		// Notifications (didOpen, didChange, ...) run in wire order on the
		// reader, so a request always sees the edits sent before it.
		if req.IsCall() {
			jsonrpc2.Async(ctx)
		}
		return s.recoverPanic(ctx, req, methods)
	})
	s.conn.Go(ctx, func(ctx context.Context, req *jsonrpc2.Request) (any, error) {
		res, err := handler(ctx, req)
		if err != nil && !req.IsCall() {
			// jsonrpc2 ends the connection when a notification fails: a
			// malformed or unknown notification is only logged.
			s.log.Warn("notification failed", "method", req.Method(), "err", err)
			return nil, nil
		}
		return res, err
	})
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		s.refresher()
	}()
	select {
	case <-s.conn.Done():
	case <-ctx.Done():
		// Remove the editor's tracepoints first: closing may wait for a
		// reader blocked on a stream that does not close (stdin).
		s.stop()
		s.conn.Close()
	}
	close(s.done)
	<-refreshed
	s.stop()
	return s.conn.Err()
}

func newServer(opts Options) *server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.RefreshEvery <= 0 {
		opts.RefreshEvery = DefaultRefreshEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Config.NATS == "" {
		opts.Config = DefaultConfig()
	}
	return &server{
		opts:    opts,
		log:     opts.Log,
		agg:     NewAggregate(opts.Config.MaxRecent),
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
		cfg:     opts.Config,
		docs:    make(map[string]*document),
	}
}

// recoverPanic answers a request whose handler panicked with an internal
// error, and logs the stack: one bad request never ends the session.
func (s *server) recoverPanic(ctx context.Context, req *jsonrpc2.Request, h jsonrpc2.Handler) (result any, err error) {
	method := req.Method()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("handler panicked", "method", method, "panic", r, "stack", string(debug.Stack()))
			result, err = nil, jsonrpc2.Errorf(jsonrpc2.InternalError, "riptrace lsp: internal error handling %s: %v (please report it with the log)", method, r)
		}
	}()
	return h(ctx, req)
}

// notify signals that the aggregate changed.
func (s *server) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// stop ends ingesting and removes the editor's tracepoints.
func (s *server) stop() {
	s.mu.Lock()
	stop, done := s.stopIngest, s.ingestDone
	s.stopIngest, s.ingestDone = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// localPath returns the local path of a document URI.
func localPath(u uri.URI) string {
	return filepath.Clean(u.Path())
}

// workspace returns the workspace that maps remote files (Lock should be
// held).
func (s *server) workspace() *source.Workspace {
	if s.ws == nil {
		s.ws, _ = source.NewWorkspace(".")
	}
	return s.ws
}

// codec marshals LSP payloads with the protocol package's union-aware codec,
// as protocol.NewServer does; Serve builds its own connection so that
// notifications keep their order.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case jsonrpc2.RawMessage:
		if m == nil {
			return []byte("null"), nil
		}
		return m, nil
	case *jsonrpc2.RawMessage:
		if m == nil || *m == nil {
			return []byte("null"), nil
		}
		return *m, nil
	}
	return protocol.Marshal(v)
}

func (codec) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*jsonrpc2.RawMessage); ok {
		*p = append(jsonrpc2.RawMessage(nil), data...)
		return nil
	}
	return protocol.Unmarshal(data, v)
}
