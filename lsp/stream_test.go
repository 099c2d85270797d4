package lsp_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/lsp"
)

// rawSession is an editor that writes frames byte by byte, as a broken
// client might, and reads what the server answers.
type rawSession struct {
	t       *testing.T
	conn    net.Conn
	replies chan jsonrpc2.Message
	served  chan error
}

func startRawSession(t *testing.T) *rawSession {
	a, b := net.Pipe()
	s := &rawSession{t: t, conn: b, replies: make(chan jsonrpc2.Message, 16), served: make(chan error, 1)}
	go func() { s.served <- lsp.Serve(context.Background(), lsp.NewStream(a), lsp.Options{Log: testLogger(t)}) }()
	// The reader runs alongside the writes: the pipe is synchronous, and
	// the server answers a bad frame before it reads the next.
	go func() {
		in := jsonrpc2.NewHeaderStream(b)
		for {
			m, _, err := in.Read(context.Background())
			if err != nil {
				close(s.replies)
				return
			}
			s.replies <- m
		}
	}()
	t.Cleanup(func() {
		b.Close()
		select {
		case <-s.served:
		case <-time.After(30 * time.Second):
			t.Error("lsp.Serve did not return within 30s of the client closing")
		}
	})
	return s
}

// frame writes body in one LSP frame.
func (s *rawSession) frame(body string) {
	s.t.Helper()
	if _, err := fmt.Fprintf(s.conn, "Content-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		s.t.Fatalf("writing a frame: %v", err)
	}
}

// reply waits for the server's next message, which must be a response.
func (s *rawSession) reply() *jsonrpc2.Response {
	s.t.Helper()
	select {
	case m, ok := <-s.replies:
		if !ok {
			s.t.Fatal("the server closed the connection")
		}
		r, ok := m.(*jsonrpc2.Response)
		if !ok {
			s.t.Fatalf("got %T %v, want a response", m, m)
		}
		return r
	case <-time.After(30 * time.Second):
		s.t.Fatal("no answer within 30s")
	}
	return nil
}

// A body that is not JSON, or JSON that is no message, inside a valid frame
// is answered with -32700 or -32600 and the session goes on: the next
// request is answered as usual.
func TestMalformedBody(t *testing.T) {
	s := startRawSession(t)
	for _, tc := range []struct {
		body string
		code jsonrpc2.Code
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{`, jsonrpc2.ParseError},
		{`not json at all`, jsonrpc2.ParseError},
		{`{"hello":"world"}`, jsonrpc2.InvalidRequest},
	} {
		// 1 >> a broken body, << an error with a null id
		s.frame(tc.body)
		r := s.reply()
		var je *jsonrpc2.Error
		if r.ID().IsValid() || !asRPCError(r.Err(), &je) || je.Code != tc.code || !strings.Contains(je.Message, "it was skipped") {
			t.Fatalf("answer to %q: id %v, error %v; want a null id and code %d", tc.body, r.ID(), r.Err(), tc.code)
		}
		t.Logf("%q: %v", tc.body, je.Message)
	}
	// 2 >> initialize, << initialize: the session goes on
	s.frame(`{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"capabilities":{}}}`)
	r := s.reply()
	if r.Err() != nil || r.ID() != jsonrpc2.NewNumberID(2) || !strings.Contains(string(r.Result()), "riptrace") {
		t.Fatalf("initialize after bad frames: id %v, error %v, result %.200s", r.ID(), r.Err(), r.Result())
	}
	// 3 >> a frame past MaxMessageBytes, << an error; 4 >> shutdown, << shutdown
	s.frame(`{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"text":"` + strings.Repeat("x", lsp.MaxMessageBytes) + `"}}`)
	if r := s.reply(); r.Err() == nil || !strings.Contains(r.Err().Error(), "more than the 67108864 it reads") {
		t.Fatalf("answer to a frame past the bound: %v", r.Err())
	}
	s.frame(`{"jsonrpc":"2.0","id":4,"method":"shutdown"}`)
	if r := s.reply(); r.Err() != nil || r.ID() != jsonrpc2.NewNumberID(4) {
		t.Fatalf("shutdown: id %v, error %v", r.ID(), r.Err())
	}
}

func asRPCError(err error, je **jsonrpc2.Error) bool {
	e, ok := err.(*jsonrpc2.Error)
	*je = e
	return ok
}

// A buffer past the bounds is not followed, the editor is told why, and it
// costs no more than its message. Before the bounds, a 20 MB buffer of short
// lines held some 390 MB.
func TestLargeDocument(t *testing.T) {
	s := startSession(t, lsp.Options{Log: testLogger(t)})
	s.initialize(t.TempDir(), nil)
	u := uri.File("/tmp/big.go")
	text := strings.Repeat("x\n", 10<<20) // 20 MiB, 10 Mi lines
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := s.server.DidOpen(ctx(t), &protocol.DidOpenTextDocumentParams{TextDocument: protocol.TextDocumentItem{URI: u, LanguageID: "go", Version: 1, Text: text}}); err != nil {
		t.Fatal(err)
	}
	// A request after it is answered once the buffer is handled:
	// notifications run in order.
	if _, err := s.server.CodeLens(ctx(t), &protocol.CodeLensParams{TextDocument: protocol.TextDocumentIdentifier{URI: u}}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap in use after opening a 20 MiB buffer: %+d MiB (client and server in this process); allocated %d MiB in all",
		(int64(after.HeapInuse)-int64(before.HeapInuse))>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
	want := "RipTrace shows no hits in /tmp/big.go: it has 20971520 bytes, more than the 8388608 riptrace lsp follows"
	for msg := ""; !strings.Contains(msg, want); {
		select {
		case msg = <-s.client.messages:
			t.Logf("message: %s", msg)
		case <-time.After(30 * time.Second):
			t.Fatalf("no message saying %q", want)
		}
	}
}
