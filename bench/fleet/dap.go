package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-dap"
)

// dapSession is a real debug adapter (`riptrace dap` over stdio) driven as
// an editor would: attached to the fleet for a few hosts, with one
// breakpoint. Its process's CPU is what a debug session costs.
type dapSession struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	seq int

	// mu guards responses and err.
	mu        sync.Mutex
	cond      *sync.Cond
	responses map[int]dap.ResponseMessage // by request seq
	err       error                       // why reading stopped

	outputs atomic.Int64 // output events: hits shown in the console, and notices
}

// startDAP starts the adapter and attaches it to the fleet at url,
// tracing on hosts, with one breakpoint at line 88 of
// internal/orders/handler.go in a checkout made in dir.
func startDAP(url, dir string, hosts []string) (*dapSession, error) {
	file := filepath.Join(dir, "internal", "orders", "handler.go")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, []byte("package orders\n"), 0o644); err != nil {
		return nil, err
	}
	d := &dapSession{responses: map[int]dap.ResponseMessage{}}
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
	steps := []struct {
		command string
		args    any
	}{
		{"initialize", map[string]any{"adapterID": "riptrace", "linesStartAt1": true, "columnsStartAt1": true}},
		{"attach", map[string]any{"nats": url, "hosts": hosts, "cwd": dir}},
		{"setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": []map[string]any{{"line": 88}}}},
		{"configurationDone", nil},
	}
	for _, s := range steps {
		if err := d.call(s.command, s.args); err != nil {
			d.stop()
			return nil, fmt.Errorf("debug adapter %s: %w", s.command, err)
		}
	}
	return d, nil
}

// call sends one request and waits for its successful response.
func (d *dapSession) call(command string, args any) error {
	d.seq++
	m := map[string]any{"seq": d.seq, "type": "request", "command": command}
	if args != nil {
		m["arguments"] = args
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := dap.WriteBaseMessage(d.in, data); err != nil {
		return err
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
		return d.err
	}
	if !r.GetResponse().Success {
		return fmt.Errorf("refused: %s", r.GetResponse().Message)
	}
	return nil
}

func (d *dapSession) read(out io.Reader) {
	br := bufio.NewReader(out)
	for {
		data, err := dap.ReadBaseMessage(br)
		if err != nil {
			d.mu.Lock()
			d.err = fmt.Errorf("reading the debug adapter: %w", err)
			d.cond.Broadcast()
			d.mu.Unlock()
			return
		}
		// RipTrace's own events are not go-dap's: they fail to decode,
		// and are not what is counted here.
		m, err := dap.DecodeProtocolMessage(data)
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case dap.ResponseMessage:
			d.mu.Lock()
			d.responses[m.GetResponse().RequestSeq] = m
			d.cond.Broadcast()
			d.mu.Unlock()
		case *dap.OutputEvent:
			d.outputs.Add(1)
		}
	}
}

// cpu is the adapter's CPU seconds so far.
func (d *dapSession) cpu() float64 { return procCPU(d.cmd.Process.Pid) }

func (d *dapSession) stop() {
	d.in.Close()
	d.cmd.Process.Kill()
	d.cmd.Wait()
}
