// Package dap is RipTrace's Debug Adapter: `riptrace dap` serves it to VS
// Code and nvim-dap over stdio or a TCP listener. Breakpoints set in the
// editor become fleet tracepoints owned by the session; agents' statuses come
// back as breakpoint events and hits as output events in the hit stream's
// order. The editor never pauses anything: no request of this adapter stops
// or kills a remote process. An attach whose configuration names a
// "recording" (riptrace run --record) replays its hits instead, and
// connects to no fleet (recording.go).
//
// The adapter is a client of fleet/ like the CLI; it maps files with source/.
package dap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
)

// Error ids of error responses. They are stable: clients may switch on them.
const (
	ErrUnsupported   = 3000 // a request this adapter does not implement
	ErrNotAttached   = 3001 // a request that needs attach came before it
	ErrBadConfig     = 3002 // invalid attach configuration
	ErrConnecting    = 3003 // the fleet (NATS) could not be reached
	ErrBadArguments  = 3004 // arguments that do not decode
	ErrInternal      = 3005 // a handler panicked: a bug
	ErrEvaluate      = 3006 // a REPL command that failed
	ErrAttachedTwice = 3007 // a second attach in one session
	ErrNoSnapshot    = 3008 // stackTrace, scopes or variables with no open snapshot; a hit to open that is not kept
	ErrSnapshotStep  = 3009 // a step request while a snapshot is open
)

// Options configure a Server.
type Options struct {
	// Log receives diagnostics; never stdout, which is the wire in stdio
	// mode. Nil discards them.
	Log *slog.Logger
	// LeaseTTL is how long the session's tracepoints outlive a crashed
	// adapter (default one minute).
	LeaseTTL time.Duration
	// ConnectTimeout bounds connecting to NATS at attach (default 10s).
	ConnectTimeout time.Duration
	// ThreadsEvery is how often a session looks at the fleet for
	// processes started or gone, besides whenever the host bucket says a
	// host changed, to send thread events (default 30s).
	ThreadsEvery time.Duration
}

// Server serves DAP sessions, one per connection. Each session's goroutines:
// the reader, which decodes and dispatches requests one at a time; the
// writer, the only one writing to the connection, fed by a queue; after
// attach, the hit pump, the thread watcher and one status watcher per
// breakpoint.
type Server struct {
	opts Options

	// panics counts handler panics recovered; the fuzz test asserts none.
	panics atomic.Int64
	// connect dials the fleet; tests replace it to pin every session to
	// their server whatever the configuration says.
	connect func(ctx context.Context, url string, opts fleet.ClientOptions) (*fleet.Client, error)
}

// NewServer returns a server with opts.
func NewServer(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = time.Minute
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.ThreadsEvery <= 0 {
		opts.ThreadsEvery = 30 * time.Second
	}
	return &Server{opts: opts, connect: fleet.Connect}
}

// Serve runs one session on r and w (stdin and stdout in stdio mode) until
// the client disconnects, r ends or ctx is done. The session's tracepoints
// are removed on the way out unless its configuration says persist.
func (s *Server) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	ss := newSession(s, w)
	return ss.run(ctx, r)
}

// ServeListener accepts connections on ln and serves a session on each until
// ctx is done.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting DAP connections: %w", err)
		}
		wg.Go(func() {
			defer conn.Close()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go func() {
				<-cctx.Done()
				conn.Close()
			}()
			if err := s.Serve(cctx, conn, conn); err != nil {
				s.opts.Log.Warn("DAP session ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		})
	}
}

// run reads and dispatches requests until disconnect or the end of input.
func (ss *session) run(ctx context.Context, r io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss.ctx, ss.cancelCtx = ctx, cancel
	go ss.writeLoop()
	defer func() {
		ss.shutdown()
		ss.closeQueue()
		select {
		case <-ss.writerDone:
		case <-time.After(10 * time.Second):
			// A client that stops reading must not keep the adapter alive.
			ss.srv.opts.Log.Warn("the DAP client stopped reading; dropping what it was sent")
		}
	}()

	br := bufio.NewReader(r)
	type readResult struct {
		data []byte
		err  error
	}
	reads := make(chan readResult)
	go func() {
		for {
			data, err := dap.ReadBaseMessage(br)
			select {
			case reads <- readResult{data, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var rr readResult
		select {
		case <-ctx.Done():
			return nil
		case rr = <-reads:
		}
		if rr.err != nil {
			if errors.Is(rr.err, io.EOF) || errors.Is(rr.err, io.ErrUnexpectedEOF) || errors.Is(rr.err, net.ErrClosed) || errors.Is(rr.err, io.ErrClosedPipe) {
				return nil
			}
			// The framing is lost: nothing after it can be trusted.
			return fmt.Errorf("reading a DAP message: %w", rr.err)
		}
		msg, err := dap.DecodeProtocolMessage(rr.data)
		if err != nil {
			ss.decodeError(rr.data, err)
			continue
		}
		req, ok := msg.(dap.RequestMessage)
		if !ok {
			ss.srv.opts.Log.Warn("ignoring a message that is not a request", "message", string(rr.data))
			continue
		}
		if ss.dispatch(req) {
			return nil
		}
	}
}

// decodeError answers a message that does not decode: an error response when
// it names a request, a log line otherwise.
func (ss *session) decodeError(data []byte, err error) {
	var head struct {
		Seq     int    `json:"seq"`
		Type    string `json:"type"`
		Command string `json:"command"`
	}
	if json.Unmarshal(data, &head) != nil || head.Type != "request" {
		ss.srv.opts.Log.Warn("ignoring a malformed DAP message", "err", err)
		return
	}
	var fe *dap.DecodeProtocolMessageFieldError
	if errors.As(err, &fe) && fe.SubType == "Request" && isCustom(head.Command) {
		// The adapter's own requests (hits.go), which go-dap does not know.
		var req struct {
			Arguments json.RawMessage `json:"arguments"`
		}
		json.Unmarshal(data, &req)
		ss.dispatchCustom(&dap.Request{ProtocolMessage: dap.ProtocolMessage{Seq: head.Seq, Type: "request"}, Command: head.Command}, req.Arguments)
		return
	}
	if errors.As(err, &fe) && fe.SubType == "Request" {
		ss.sendError(head.Seq, head.Command, ErrUnsupported, fmt.Sprintf("riptrace dap does not support the %q request", head.Command))
		return
	}
	ss.sendError(head.Seq, head.Command, ErrBadArguments, fmt.Sprintf("malformed %q request: %v", head.Command, err))
}

// dispatch handles one request; it reports whether the session is over.
// Every handler runs under recoverPanic, so a bug answers an error and the
// session goes on.
func (ss *session) dispatch(req dap.RequestMessage) (done bool) {
	r := req.GetRequest()
	defer ss.recoverPanic(r)
	switch req := req.(type) {
	// Required
	case *dap.InitializeRequest:
		ss.onInitialize(req)
	// Required: the only way to start a session, since nothing is launched.
	case *dap.AttachRequest:
		ss.onAttach(req)
	// Required: launching would start processes; RipTrace only traces.
	case *dap.LaunchRequest:
		ss.sendError(r.Seq, r.Command, ErrUnsupported, `riptrace dap only attaches to running services: use "request": "attach"`)
	// Required
	case *dap.SetBreakpointsRequest:
		ss.onSetBreakpoints(req)
	// Optional (capability 'supportsFunctionBreakpoints'): found in the
	// local checkout, traced at the function's first statement.
	case *dap.SetFunctionBreakpointsRequest:
		ss.onSetFunctionBreakpoints(req)
	// Optional (capability 'supportsConfigurationDoneRequest')
	case *dap.ConfigurationDoneRequest:
		ss.onConfigurationDone(req)
	// Required
	case *dap.ThreadsRequest:
		ss.onThreads(req)
	// Required: only 'repl' commands (hosts, hits, help).
	case *dap.EvaluateRequest:
		ss.onEvaluate(req)
	// Required: the captured stack of the open snapshot; nothing else is
	// ever stopped.
	case *dap.StackTraceRequest:
		ss.onStackTrace(req)
	// Required: the open snapshot's arguments, locals and expressions.
	case *dap.ScopesRequest:
		ss.onScopes(req)
	// Required: the open snapshot's values, children included.
	case *dap.VariablesRequest:
		ss.onVariables(req)
	// Required: dismisses the open snapshot (nothing was paused).
	case *dap.ContinueRequest:
		ss.onContinue(req)
	// Optional (capabilities 'supportsStepBack', 'supportsGotoTargetsRequest',
	// 'supportsRestartFrame' are not set); VS Code's step buttons send the
	// first three during a snapshot regardless: a snapshot is a record, and
	// nothing paused steps.
	case *dap.NextRequest, *dap.StepInRequest, *dap.StepOutRequest, *dap.StepBackRequest, *dap.ReverseContinueRequest, *dap.GotoRequest, *dap.RestartFrameRequest:
		ss.onStep(r)
	// Required: refused, because pausing a service is what RipTrace never does.
	case *dap.PauseRequest:
		ss.sendError(r.Seq, r.Command, ErrUnsupported, "RipTrace never pauses a process: set a breakpoint to see its values in the debug console")
	// Optional (capability 'supportsExceptionInfoRequest' is not set); VS
	// Code sends it regardless, with no filters.
	case *dap.SetExceptionBreakpointsRequest:
		ss.send(&dap.SetExceptionBreakpointsResponse{Response: ss.response(r)})
	// Optional (capability 'supportsTerminateRequest')
	case *dap.TerminateRequest:
		ss.onTerminate(req)
	// Required
	case *dap.DisconnectRequest:
		ss.onDisconnect(req)
		return true
	default:
		ss.sendError(r.Seq, r.Command, ErrUnsupported, fmt.Sprintf("riptrace dap does not support the %q request", r.Command))
	}
	return false
}

// recoverPanic turns a handler's panic into an error response.
func (ss *session) recoverPanic(r *dap.Request) {
	if p := recover(); p != nil {
		ss.srv.panics.Add(1)
		ss.srv.opts.Log.Error("panic in a DAP handler", "command", r.Command, "panic", p, "stack", string(debug.Stack()))
		ss.sendError(r.Seq, r.Command, ErrInternal, fmt.Sprintf("internal error handling %q: %v (a bug: please report it with the adapter's log)", r.Command, p))
	}
}

// response returns the success response header for r.
func (ss *session) response(r *dap.Request) dap.Response {
	return dap.Response{ProtocolMessage: dap.ProtocolMessage{Type: "response"}, RequestSeq: r.Seq, Success: true, Command: r.Command}
}

func (ss *session) event(name string) dap.Event {
	return dap.Event{ProtocolMessage: dap.ProtocolMessage{Type: "event"}, Event: name}
}

func (ss *session) sendError(seq int, command string, id int, msg string) {
	ss.send(&dap.ErrorResponse{
		Response: dap.Response{ProtocolMessage: dap.ProtocolMessage{Type: "response"}, RequestSeq: seq, Command: command, Message: msg},
		Body:     dap.ErrorResponseBody{Error: &dap.ErrorMessage{Id: id, Format: msg, ShowUser: true}},
	})
}

// send queues m for the writer. It blocks while the queue is full (hits
// wait for a slow client rather than pile up); once the session is ending
// it drops m rather than wait for a client that stopped reading.
func (ss *session) send(m dap.Message) {
	ss.qmu.RLock()
	defer ss.qmu.RUnlock()
	if ss.qclosed {
		return
	}
	select {
	case ss.queue <- m:
		return
	default:
	}
	select {
	case ss.queue <- m:
	case <-ss.writerDone:
	case <-ss.ctx.Done():
	}
}

// sendLast queues the session's last message (the disconnect response):
// after the session's context ends, it still waits a while for room.
func (ss *session) sendLast(m dap.Message) {
	ss.qmu.RLock()
	defer ss.qmu.RUnlock()
	if ss.qclosed {
		return
	}
	select {
	case ss.queue <- m:
	case <-ss.writerDone:
	case <-time.After(10 * time.Second):
	}
}

func (ss *session) closeQueue() {
	ss.qmu.Lock()
	defer ss.qmu.Unlock()
	if !ss.qclosed {
		ss.qclosed = true
		close(ss.queue)
	}
}

// writeLoop is the only writer of the connection. It numbers messages in
// the order it writes them.
func (ss *session) writeLoop() {
	defer close(ss.writerDone)
	seq := 0
	failed := false
	for m := range ss.queue {
		if failed {
			continue
		}
		seq++
		setSeq(m, seq)
		data, err := json.Marshal(m)
		if err == nil {
			err = dap.WriteBaseMessage(ss.w, data)
		}
		if err != nil {
			ss.srv.opts.Log.Warn("writing to the DAP client", "err", err)
			failed = true
			// The client is gone: end the session so its tracepoints go.
			ss.cancelCtx()
		}
	}
}

func setSeq(m dap.Message, seq int) {
	switch m := m.(type) {
	case dap.ResponseMessage:
		m.GetResponse().Seq = seq
	case dap.EventMessage:
		m.GetEvent().Seq = seq
	case dap.RequestMessage:
		m.GetRequest().Seq = seq
	}
}
