package dap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// fuzzSeeds are sessions, one message per line; a line starting with RAW:
// is written as is (with \r\n for "\\r\\n"), others are framed. They mix
// valid sessions with malformed, mistyped and out-of-order requests.
var fuzzSeeds = []string{
	`{"seq":1,"type":"request","command":"initialize","arguments":{"adapterID":"riptrace"}}
{"seq":2,"type":"request","command":"attach","arguments":{"nats":"nats://x:1","hosts":["h-*"],"capture":{"locals":true}}}
{"seq":3,"type":"request","command":"setBreakpoints","arguments":{"source":{"path":"../agent/testdata/targets/loop/main.go"},"breakpoints":[{"line":60,"condition":"n>1"},{"line":0},{"line":61,"logMessage":"x={x"}]}}
{"seq":4,"type":"request","command":"threads"}
{"seq":5,"type":"request","command":"evaluate","arguments":{"expression":"hits 3","context":"repl"}}
{"seq":6,"type":"request","command":"setBreakpoints","arguments":{"source":{"path":"../agent/testdata/targets/loop/main.go"},"breakpoints":[]}}
{"seq":7,"type":"request","command":"disconnect"}`,
	`{"seq":1,"type":"request","command":"setBreakpoints","arguments":{"source":{}}}
{"seq":2,"type":"request","command":"attach","arguments":5}
{"seq":3,"type":"request","command":"attach","arguments":{"hosts":[1,2]}}
{"seq":4,"type":"request","command":"evaluate","arguments":{"expression":"hosts"}}
{"seq":5,"type":"request","command":"terminate"}
{"seq":6,"type":"request","command":"nonsense"}`,
	`{"seq":1,"type":"request","command":"attach","arguments":{}}
{"seq":2,"type":"request","command":"attach","arguments":{}}
{"seq":3,"type":"request","command":"terminate"}
{"seq":4,"type":"request","command":"setBreakpoints","arguments":{"source":{"path":"/x.go"},"lines":[1,2,-3]}}
{"seq":5,"type":"request","command":"stackTrace","arguments":{"threadId":1}}
{"seq":6,"type":"response","command":"runInTerminal","success":true}
{"seq":7,"type":"event","event":"output"}
{"type":"request"}
{"seq":"x","type":"request","command":"threads"}
{not json`,
	`{"seq":1,"type":"request","command":"initialize","arguments":{"linesStartAt1":"yes"}}
{"seq":2,"type":"request","command":"evaluate","arguments":{"expression":"hits -1","context":"repl"}}
{"seq":3,"type":"request","command":"evaluate","arguments":{"expression":"hits 99999999999999999999","context":"repl"}}
{"seq":4,"type":"request","command":"setBreakpoints","arguments":{"source":{"path":"a.go"},"breakpoints":[{"line":1,"hitCondition":">= 2"}]}}
RAW:Content-Length: 3\r\n\r\n{}}`,
	`RAW:Content-Length: 99999999\r\n\r\n{"seq":1}`,
	`RAW:garbage without a header\r\n\r\n`,
	`{"seq":1,"type":"request","command":"attach","arguments":{"nats":"nats://x:1","substitutePath":[{"from":"/","to":"/"}],"persist":true,"maxHitsPerSecond":1}}
{"seq":2,"type":"request","command":"setBreakpoints","arguments":{"source":{"path":"/"},"breakpoints":[{"line":1}]}}
{"seq":3,"type":"request","command":"continue","arguments":{"threadId":1}}
{"seq":4,"type":"request","command":"pause","arguments":{"threadId":1}}
{"seq":5,"type":"request","command":"configurationDone"}
{"seq":6,"type":"request","command":"disconnect","arguments":{"terminateDebuggee":true}}
{"seq":7,"type":"request","command":"threads"}`,
}

// FuzzRequests feeds sessions of malformed and out-of-order requests to the
// adapter, attached to a real NATS server: no handler may panic, every
// session must end once its input does, and everything written must be
// well-formed DAP.
func FuzzRequests(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	ns := fleettest.RunServer(f)
	url := ns.ClientURL()
	f.Fuzz(func(t *testing.T, input string) {
		srv := NewServer(Options{ConnectTimeout: 2 * time.Second, LeaseTTL: 10 * time.Second, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
		srv.connect = func(ctx context.Context, _ string, opts fleet.ClientOptions) (*fleet.Client, error) {
			opts.Prefix = "" // the configuration's prefix is fuzzed too; stay on one
			return fleet.Connect(ctx, url, opts)
		}
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		served := make(chan error, 1)
		go func() {
			served <- srv.Serve(context.Background(), inR, outW)
			outW.Close()
			inR.Close()
		}()
		read := make(chan error, 1)
		go func() {
			br := bufio.NewReader(outR)
			for {
				data, err := dap.ReadBaseMessage(br)
				if err != nil {
					if errors.Is(err, io.EOF) {
						err = nil
					}
					read <- err
					return
				}
				if _, err := dap.DecodeProtocolMessage(data); err != nil {
					read <- fmt.Errorf("the adapter wrote a message that does not decode: %v: %s", err, data)
					io.Copy(io.Discard, br)
					return
				}
			}
		}()
		go func() {
			for _, line := range strings.Split(input, "\n") {
				var err error
				if raw, ok := strings.CutPrefix(line, "RAW:"); ok {
					_, err = inW.Write([]byte(strings.ReplaceAll(raw, `\r\n`, "\r\n")))
				} else {
					err = dap.WriteBaseMessage(inW, []byte(line))
				}
				if err != nil {
					return // the adapter ended the session
				}
			}
			inW.Close()
		}()
		select {
		case <-served:
		case <-time.After(20 * time.Second):
			t.Fatalf("the session did not end within 20s of its input's end")
		}
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		if n := srv.panics.Load(); n != 0 {
			t.Fatalf("%d handler(s) panicked (their stacks are on stderr)", n)
		}
	})
}
