package lsp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"

	"github.com/riptrace/riptrace/lsp"
)

// FuzzRequest sends one request or notification, any method with any
// params, to an initialized server that has a document open, then shutdown: the server must answer shutdown, so
// no message can crash or wedge it. The seeds run with go test.
func FuzzRequest(f *testing.F) {
	doc := `"textDocument":{"uri":"file:///w/main.go"}`
	for _, seed := range []struct {
		method, params string
		call           bool
	}{
		{"textDocument/codeLens", `{` + doc + `}`, true},
		{"textDocument/inlayHint", `{` + doc + `,"range":{"start":{"line":4294967295,"character":0},"end":{"line":0,"character":99}}}`, true},
		{"textDocument/hover", `{` + doc + `,"position":{"line":3,"character":4000}}`, true},
		{"textDocument/didChange", `{"textDocument":{"uri":"file:///w/main.go","version":2},"contentChanges":[{"range":{"start":{"line":9,"character":3},"end":{"line":1,"character":0}},"text":"a\nb\n🙂"}]}`, false},
		{"textDocument/didChange", `{"textDocument":{"uri":"file:///w/main.go","version":2},"contentChanges":[{"text":""}]}`, false},
		{"workspace/executeCommand", `{"command":"riptrace.toggleTracepoint","arguments":["file:///w/main.go",-1]}`, true},
		{"workspace/executeCommand", `{"command":"riptrace.showHits","arguments":[{},[]]}`, true},
		{"workspace/executeCommand", `{"command":"riptrace.clearHits","arguments":[3]}`, true},
		{"workspace/didChangeConfiguration", `{"settings":{"riptrace":{"history":"soon","hosts":[""]}}}`, false},
		{"textDocument/codeLens", `null`, true},
		{"textDocument/didOpen", `{"textDocument":7}`, false},
		{"$/cancelRequest", `{"id":{}}`, false},
		{"no/such/method", `[]`, true},
		{"no/such/notification", `{}`, false},
	} {
		f.Add(seed.method, []byte(seed.params), seed.call)
	}
	f.Fuzz(func(t *testing.T, method string, params []byte, call bool) {
		if method == "exit" || method == "initialized" {
			t.Skip("exit ends the session and initialized dials NATS: both are tested elsewhere")
		}
		if !json.Valid(params) {
			params, _ = json.Marshal(string(params))
		}
		m, _ := json.Marshal(method)
		msg := fmt.Sprintf(`{"jsonrpc":"2.0","method":%s,"params":%s}`, m, params)
		if call {
			msg = fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%s,"params":%s}`, m, params)
		}
		a, b := net.Pipe()
		served := make(chan error, 1)
		go func() {
			served <- lsp.Serve(context.Background(), jsonrpc2.NewStream(a), lsp.Options{Config: lsp.Config{NATS: "nats://127.0.0.1:1", History: "1m"}})
		}()
		defer func() {
			b.Close()
			<-served
		}()
		replies := make(chan map[string]any, 16)
		go readFrames(b, replies)
		send := func(body string) {
			b.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(b, "Content-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				t.Fatalf("writing %s: %v", body, err)
			}
		}
		send(`{"jsonrpc":"2.0","id":100,"method":"initialize","params":{"rootUri":"file:///w","capabilities":{}}}`)
		send(`{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":"file:///w/main.go","languageId":"go","version":1,"text":"package main\n\nfunc main() {\n\tx := 1 // é🙂\n}\n"}}}`)
		send(msg)
		send(`{"jsonrpc":"2.0","id":101,"method":"shutdown"}`)
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r, ok := <-replies:
				if !ok {
					t.Fatalf("the server closed the connection after %q", msg)
				}
				if id, _ := r["id"].(float64); id == 101 {
					if r["error"] != nil {
						t.Fatalf("shutdown after %q: %v", msg, r["error"])
					}
					return
				}
			case <-deadline:
				t.Fatalf("no answer to shutdown within 10s after %q", msg)
			}
		}
	})
}

// readFrames reads LSP frames from r into out until r ends.
func readFrames(r io.Reader, out chan<- map[string]any) {
	defer close(out)
	br := bufio.NewReader(r)
	tp := textproto.NewReader(br)
	for {
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		n, err := strconv.Atoi(h.Get("Content-Length"))
		if err != nil {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		var m map[string]any
		json.Unmarshal(body, &m)
		out <- m
	}
}
