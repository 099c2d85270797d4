package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
)

// checkoutLines is how many lines the bench's checkout file has: room for
// a traced line per sustained run after line 88, the debug session's.
const checkoutLines = 120

// checkout is the local checkout the debug sessions and the language
// server work in: a module with internal/orders/handler.go, the file the
// simulated agents' hits name.
type checkout struct {
	dir  string
	file string // internal/orders/handler.go in dir
}

// writeCheckout writes the checkout in dir.
func writeCheckout(dir string) (checkout, error) {
	co := checkout{dir: dir, file: filepath.Join(dir, "internal", "orders", "handler.go")}
	if err := os.MkdirAll(filepath.Dir(co.file), 0o755); err != nil {
		return co, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/shop\n\ngo 1.26\n"), 0o644); err != nil {
		return co, err
	}
	var b strings.Builder
	b.WriteString("package orders\n")
	for i := 2; i <= checkoutLines; i++ {
		fmt.Fprintf(&b, "\t// line %d: total, err := h.charge(ctx, req)\n", i)
	}
	return co, os.WriteFile(co.file, []byte(b.String()), 0o644)
}

// dapSession is a real debug adapter (`riptrace dap` over stdio) driven as
// an editor would: attached to the fleet for some hosts or all, with one
// breakpoint. Its process's CPU is what a debug session costs, and its
// debug console and hits view say how many hits it received.
type dapSession struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	seq int

	// mu guards responses and err.
	mu        sync.Mutex
	cond      *sync.Cond
	responses map[int]*dapResponse // by request seq
	err       error                // why reading stopped

	outputs atomic.Int64 // output events: hits shown in the console, counts, and notices
	// inAll is the largest count of hits the console said its breakpoint
	// had ("… more in the last second (N in all)").
	inAll atomic.Int64
}

// dapResponse is a response as the adapter sent it: go-dap does not know
// RipTrace's own requests, so responses are read as JSON.
type dapResponse struct {
	Success bool            `json:"success"`
	Message string          `json:"message"`
	Body    json.RawMessage `json:"body"`
}

// startDAP starts the adapter and attaches it to the fleet at url, tracing
// on hosts (every host if none), each process allowed limit hits a second
// (the adapter's default if 0), with one breakpoint at line of the
// checkout's file.
func startDAP(url string, co checkout, hosts []string, limit, line int) (*dapSession, error) {
	d := &dapSession{responses: map[int]*dapResponse{}}
	d.cond = sync.NewCond(&d.mu)
	d.cmd = exec.Command(*bin, "dap", "--log-level", "error")
	d.cmd.Stderr = os.Stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if d.in, err = d.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go d.read(out)
	attach := map[string]any{"nats": url, "cwd": co.dir}
	if len(hosts) > 0 {
		attach["hosts"] = hosts
	}
	if limit > 0 {
		attach["maxHitsPerSecond"] = limit
	}
	steps := []struct {
		command string
		args    any
	}{
		{"initialize", map[string]any{"adapterID": "riptrace", "linesStartAt1": true, "columnsStartAt1": true}},
		{"attach", attach},
		{"setBreakpoints", map[string]any{"source": map[string]any{"path": co.file}, "breakpoints": []map[string]any{{"line": line}}}},
		{"configurationDone", nil},
	}
	for _, s := range steps {
		if _, err := d.call(s.command, s.args); err != nil {
			d.stop()
			return nil, fmt.Errorf("debug adapter %s: %w", s.command, err)
		}
	}
	return d, nil
}

// tracepoint returns the id of the tracepoint the session's breakpoint
// became, as the fleet's tracepoint bucket holds it.
func (d *dapSession) tracepoint(ctx context.Context, c *fleet.Client) (string, error) {
	owner := fmt.Sprintf("(pid %d on ", d.cmd.Process.Pid)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		specs, err := c.Tracepoints(ctx)
		if err != nil {
			return "", err
		}
		for _, s := range specs {
			if strings.HasPrefix(s.Owner, "riptrace dap session") && strings.Contains(s.Owner, owner) {
				return s.ID, nil
			}
		}
	}
	return "", errors.New("the debug session declared no tracepoint within 30s")
}

// call sends one request and returns the body of its successful response.
func (d *dapSession) call(command string, args any) (json.RawMessage, error) {
	d.seq++
	m := map[string]any{"seq": d.seq, "type": "request", "command": command}
	if args != nil {
		m["arguments"] = args
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := dap.WriteBaseMessage(d.in, data); err != nil {
		return nil, err
	}
	deadline := time.AfterFunc(30*time.Second, func() {
		d.mu.Lock()
		d.err = fmt.Errorf("no response to %s within 30s", command)
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer deadline.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.responses[d.seq] == nil && d.err == nil {
		d.cond.Wait()
	}
	r := d.responses[d.seq]
	if r == nil {
		return nil, d.err
	}
	if !r.Success {
		return nil, fmt.Errorf("refused: %s", r.Message)
	}
	return r.Body, nil
}

// hitsViewCount asks the hits view (riptrace/hits, as the editors' RipTrace
// view does) how many hits the session's breakpoints have, in all.
func (d *dapSession) hitsViewCount() (int64, error) {
	body, err := d.call("riptrace/hits", nil)
	if err != nil {
		return 0, err
	}
	var v struct {
		Breakpoints []struct {
			Count int64 `json:"count"`
		} `json:"breakpoints"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, fmt.Errorf("reading the hits view: %w", err)
	}
	var n int64
	for _, b := range v.Breakpoints {
		n += b.Count
	}
	return n, nil
}

// inAllRE finds the total in a console count line.
var inAllRE = regexp.MustCompile(`\((\d+) in all\)`)

// maxFrame bounds a message from the adapter. go-dap's reader refuses
// bodies over 4 MiB, and the hits view of a breakpoint on 1000 agents,
// with each one's recent hits, is larger.
const maxFrame = 256 << 20

// readFrame reads the body of one message from the adapter.
func readFrame(br *bufio.Reader) ([]byte, error) {
	n := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length:"); ok {
			if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return nil, fmt.Errorf("a message's Content-Length %q: %w", v, err)
			}
		}
	}
	if n < 0 || n > maxFrame {
		return nil, fmt.Errorf("a message of %d bytes: want a Content-Length up to %d", n, maxFrame)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(br, body)
	return body, err
}

func (d *dapSession) read(out io.Reader) {
	br := bufio.NewReader(out)
	for {
		data, err := readFrame(br)
		if err != nil {
			d.mu.Lock()
			d.err = fmt.Errorf("reading the debug adapter: %w", err)
			d.cond.Broadcast()
			d.mu.Unlock()
			return
		}
		var m struct {
			Type       string `json:"type"`
			Event      string `json:"event"`
			RequestSeq int    `json:"request_seq"`
			dapResponse
		}
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		switch {
		case m.Type == "response":
			d.mu.Lock()
			d.responses[m.RequestSeq] = &m.dapResponse
			d.cond.Broadcast()
			d.mu.Unlock()
		case m.Type == "event" && m.Event == "output":
			d.outputs.Add(1)
			var body struct {
				Output string `json:"output"`
			}
			json.Unmarshal(m.Body, &body)
			if sm := inAllRE.FindStringSubmatch(body.Output); sm != nil {
				n, _ := strconv.ParseInt(sm[1], 10, 64)
				if n > d.inAll.Load() {
					d.inAll.Store(n)
				}
			}
		}
	}
}

// cpu is the adapter's CPU seconds so far.
func (d *dapSession) cpu() float64 { return procCPU(d.cmd.Process.Pid) }

// stop disconnects as an editor does, which removes the session's
// tracepoints, and ends the adapter.
func (d *dapSession) stop() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.call("disconnect", map[string]any{})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	d.in.Close()
	d.cmd.Process.Kill()
	d.cmd.Wait()
}
