package dap

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
)

// TestHandlerPanicAnswersError breaks a session on purpose (attached, but
// with no configuration) so that setBreakpoints panics: the request gets an
// ErrInternal response and the session goes on.
func TestHandlerPanicAnswersError(t *testing.T) {
	srv := NewServer(Options{})
	var out bytes.Buffer
	ss := newSession(srv, &out)
	ss.ctx, ss.cancelCtx = context.WithCancel(context.Background())
	defer ss.cancelCtx()
	go ss.writeLoop()
	ss.client = &fleet.Client{}

	req := &dap.SetBreakpointsRequest{
		Request:   dap.Request{ProtocolMessage: dap.ProtocolMessage{Seq: 7, Type: "request"}, Command: "setBreakpoints"},
		Arguments: dap.SetBreakpointsArguments{Source: dap.Source{Path: "/x.go"}, Breakpoints: []dap.SourceBreakpoint{{Line: 1}}},
	}
	if done := ss.dispatch(req); done {
		t.Fatal("a panicking handler ended the session")
	}
	ss.dispatch(&dap.EvaluateRequest{Request: dap.Request{ProtocolMessage: dap.ProtocolMessage{Seq: 8, Type: "request"}, Command: "evaluate"}, Arguments: dap.EvaluateArguments{Expression: "help", Context: "repl"}})
	ss.closeQueue()
	<-ss.writerDone

	r := bufio.NewReader(&out)
	var msgs []dap.Message
	for {
		data, err := dap.ReadBaseMessage(r)
		if err != nil {
			break
		}
		m, err := dap.DecodeProtocolMessage(data)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want the error response and the evaluate response", len(msgs))
	}
	er, ok := msgs[0].(*dap.ErrorResponse)
	if !ok || er.RequestSeq != 7 || er.Body.Error == nil || er.Body.Error.Id != ErrInternal || !strings.Contains(er.Message, `internal error handling "setBreakpoints"`) {
		t.Fatalf("first message = %#v, want an ErrInternal response to request 7", msgs[0])
	}
	if _, ok := msgs[1].(*dap.EvaluateResponse); !ok {
		t.Fatalf("second message = %#v, want the evaluate response", msgs[1])
	}
	if n := srv.panics.Load(); n != 1 {
		t.Fatalf("recovered %d panics, want 1", n)
	}
}
