// Package daptest is a DAP client for tests of the debug adapter: it sends
// requests and reads responses and events with Expect… helpers, so that a
// test reads as the transcript of a session (after Delve's
// service/dap/daptest).
//
// Events arrive asynchronously (breakpoint events, hits): [Expect] and the
// Expect…Response helpers skip over events and keep them, and Await…
// helpers find the first event that matches, from those kept or still to
// come.
package daptest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// Timeout bounds every Expect and Await.
var Timeout = 30 * time.Second

// Client is a DAP client on one connection.
type Client struct {
	w   io.Writer
	seq int

	// mu guards the fields below; cond signals when they change.
	mu      sync.Mutex
	cond    *sync.Cond
	pending []dap.Message // received, not yet consumed
	err     error         // why reading stopped
}

// NewClient starts reading from r; requests go to w.
func NewClient(r io.Reader, w io.Writer) *Client {
	c := &Client{w: w}
	c.cond = sync.NewCond(&c.mu)
	go c.read(bufio.NewReader(r))
	return c
}

func (c *Client) read(r *bufio.Reader) {
	for {
		data, err := dap.ReadBaseMessage(r)
		var m dap.Message
		if err == nil {
			m, err = dap.DecodeProtocolMessage(data)
			var fe *dap.DecodeProtocolMessageFieldError
			if errors.As(err, &fe) && (fe.SubType == "Event" || fe.SubType == "Response") {
				// The adapter's own events and answers to its own requests.
				c := &Custom{}
				m, err = c, json.Unmarshal(data, c)
			}
			if err != nil {
				err = fmt.Errorf("decoding %s: %w", data, err)
			}
		}
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.pending = append(c.pending, m)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// Send sends a request with the next sequence number and returns it.
func (c *Client) Send(t testing.TB, command string, args any) int {
	t.Helper()
	c.seq++
	m := map[string]any{"seq": c.seq, "type": "request", "command": command}
	if args != nil {
		m["arguments"] = args
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := dap.WriteBaseMessage(c.w, data); err != nil {
		t.Fatalf("sending %s: %v", command, err)
	}
	return c.seq
}

// Close closes the connection if the client's writer is one: the adapter
// sees the client hang up.
func (c *Client) Close() error {
	if cl, ok := c.w.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// SendRaw writes one framed message as is.
func (c *Client) SendRaw(data []byte) error { return dap.WriteBaseMessage(c.w, data) }

// take removes and returns the first pending message for which match is
// true, waiting up to Timeout. what names it in the failure.
func (c *Client) take(t testing.TB, what string, match func(dap.Message) bool) dap.Message {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	timer := time.AfterFunc(Timeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i, m := range c.pending {
			if match(m) {
				c.pending = append(c.pending[:i:i], c.pending[i+1:]...)
				return m
			}
		}
		if c.err != nil || !time.Now().Before(deadline) {
			why := fmt.Sprintf("within %v", Timeout)
			if c.err != nil {
				why = fmt.Sprintf("before the connection ended (%v)", c.err)
			}
			t.Fatalf("no %s %s; unconsumed messages:\n%s", what, why, describe(c.pending))
		}
		c.cond.Wait()
	}
}

func describe(ms []dap.Message) string {
	var sb strings.Builder
	for _, m := range ms {
		b, _ := json.Marshal(m)
		if len(b) > 400 {
			b = append(b[:400], "…"...)
		}
		fmt.Fprintf(&sb, "  %s\n", b)
	}
	return sb.String()
}

// ExpectErrorResponse takes the next response and fails unless it is an
// error response to command with the error id.
func (c *Client) ExpectErrorResponse(t testing.TB, command string, id int) *dap.ErrorResponse {
	t.Helper()
	m := c.take(t, "error response to "+command, func(m dap.Message) bool { _, ok := m.(dap.ResponseMessage); return ok })
	er, ok := m.(*dap.ErrorResponse)
	if !ok || er.Command != command || er.Body.Error == nil || er.Body.Error.Id != id {
		b, _ := json.Marshal(m)
		t.Fatalf("got %s, want an error response to %s with id %d", b, command, id)
	}
	return er
}

// Expect takes the next response, skipping events, and fails unless it is a
// successful one of type R:
//
//	frames := daptest.Expect[*dap.StackTraceResponse](t, c).Body.StackFrames
func Expect[R dap.ResponseMessage](t testing.TB, c *Client) R {
	t.Helper()
	var want R
	m := c.take(t, fmt.Sprintf("%T", want), func(m dap.Message) bool { _, ok := m.(dap.ResponseMessage); return ok })
	r, ok := m.(R)
	if !ok || !r.GetResponse().Success {
		b, _ := json.Marshal(m)
		t.Fatalf("got %s, want a successful %T", b, want)
	}
	return r
}

func (c *Client) ExpectInitializeResponse(t testing.TB) *dap.InitializeResponse {
	t.Helper()
	return Expect[*dap.InitializeResponse](t, c)
}

func (c *Client) ExpectAttachResponse(t testing.TB) *dap.AttachResponse {
	t.Helper()
	return Expect[*dap.AttachResponse](t, c)
}

func (c *Client) ExpectSetBreakpointsResponse(t testing.TB) *dap.SetBreakpointsResponse {
	t.Helper()
	return Expect[*dap.SetBreakpointsResponse](t, c)
}

func (c *Client) ExpectConfigurationDoneResponse(t testing.TB) *dap.ConfigurationDoneResponse {
	t.Helper()
	return Expect[*dap.ConfigurationDoneResponse](t, c)
}

func (c *Client) ExpectThreadsResponse(t testing.TB) *dap.ThreadsResponse {
	t.Helper()
	return Expect[*dap.ThreadsResponse](t, c)
}

func (c *Client) ExpectEvaluateResponse(t testing.TB) *dap.EvaluateResponse {
	t.Helper()
	return Expect[*dap.EvaluateResponse](t, c)
}

func (c *Client) ExpectDisconnectResponse(t testing.TB) *dap.DisconnectResponse {
	t.Helper()
	return Expect[*dap.DisconnectResponse](t, c)
}

func (c *Client) ExpectTerminateResponse(t testing.TB) *dap.TerminateResponse {
	t.Helper()
	return Expect[*dap.TerminateResponse](t, c)
}

// ExpectInitializedEvent takes the initialized event.
func (c *Client) ExpectInitializedEvent(t testing.TB) *dap.InitializedEvent {
	t.Helper()
	return c.take(t, "initialized event", func(m dap.Message) bool { _, ok := m.(*dap.InitializedEvent); return ok }).(*dap.InitializedEvent)
}

// ExpectTerminatedEvent takes the terminated event.
func (c *Client) ExpectTerminatedEvent(t testing.TB) *dap.TerminatedEvent {
	t.Helper()
	return c.take(t, "terminated event", func(m dap.Message) bool { _, ok := m.(*dap.TerminatedEvent); return ok }).(*dap.TerminatedEvent)
}

// AwaitEvent takes the first event called name.
func (c *Client) AwaitEvent(t testing.TB, name string) dap.EventMessage {
	t.Helper()
	return c.take(t, name+" event", func(m dap.Message) bool {
		e, ok := m.(dap.EventMessage)
		return ok && e.GetEvent().Event == name
	}).(dap.EventMessage)
}

// AwaitBreakpointEvent takes the first breakpoint event for which ok is
// true, leaving others pending.
func (c *Client) AwaitBreakpointEvent(t testing.TB, what string, ok func(*dap.Breakpoint) bool) *dap.BreakpointEvent {
	t.Helper()
	return c.take(t, "breakpoint event "+what, func(m dap.Message) bool {
		e, is := m.(*dap.BreakpointEvent)
		return is && ok(&e.Body.Breakpoint)
	}).(*dap.BreakpointEvent)
}

// AwaitOutputEvent takes the first output event for which ok is true,
// leaving others pending.
func (c *Client) AwaitOutputEvent(t testing.TB, what string, ok func(*dap.OutputEvent) bool) *dap.OutputEvent {
	t.Helper()
	return c.take(t, "output event "+what, func(m dap.Message) bool {
		e, is := m.(*dap.OutputEvent)
		return is && ok(e)
	}).(*dap.OutputEvent)
}

// HitEvents takes the next n output events that carry a hit (in data), in
// the order they arrived.
func (c *Client) HitEvents(t testing.TB, n int) []*dap.OutputEvent {
	t.Helper()
	var out []*dap.OutputEvent
	for len(out) < n {
		out = append(out, c.AwaitOutputEvent(t, fmt.Sprintf("with a hit (%d of %d)", len(out)+1, n), func(e *dap.OutputEvent) bool { return len(e.Body.Data) > 0 }))
	}
	return out
}

// Drop discards pending messages for which match is true.
func (c *Client) Drop(match func(dap.Message) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.pending[:0]
	for _, m := range c.pending {
		if !match(m) {
			kept = append(kept, m)
		}
	}
	c.pending = kept
}

// Custom is an event or a response that go-dap does not know: the
// adapter's own (dap.EventHits, answers to dap.RequestHits and the others).
type Custom struct {
	dap.ProtocolMessage
	Event      string          `json:"event,omitempty"`
	Command    string          `json:"command,omitempty"`
	RequestSeq int             `json:"request_seq,omitempty"`
	Success    bool            `json:"success,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
}

// ExpectCustomResponse takes the next successful answer to the adapter's own
// request command, skipping events, and decodes its body into body.
func (c *Client) ExpectCustomResponse(t testing.TB, command string, body any) {
	t.Helper()
	m := c.take(t, command+" response", func(m dap.Message) bool {
		if r, ok := m.(*dap.ErrorResponse); ok && r.Command == command {
			return true
		}
		cu, ok := m.(*Custom)
		return ok && cu.Type == "response" && cu.Command == command
	})
	if r, ok := m.(*dap.ErrorResponse); ok {
		t.Fatalf("%s failed: %s", command, r.Message)
	}
	if err := json.Unmarshal(m.(*Custom).Body, body); err != nil {
		t.Fatalf("decoding the %s response's body %s: %v", command, m.(*Custom).Body, err)
	}
}

// AwaitCustomEvent finds the first of the adapter's own events named name
// for which ok is true, and decodes its body into body.
func (c *Client) AwaitCustomEvent(t testing.TB, name string, body any, ok func() bool) {
	t.Helper()
	c.take(t, name+" event", func(m dap.Message) bool {
		cu, is := m.(*Custom)
		if !is || cu.Type != "event" || cu.Event != name {
			return false
		}
		return json.Unmarshal(cu.Body, body) == nil && ok()
	})
}
