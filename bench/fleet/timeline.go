package main

import (
	"bufio"
	"bytes"
	"io"
	"os/exec"
	"sync"
	"sync/atomic"
)

// timelineProc is `riptrace timeline --json` following one tracepoint's
// hits: the fleet's timeline as a user reads it, every hit placed in the
// order it ran and printed, one JSON object a line. What it printed is
// counted, not kept.
type timelineProc struct {
	cmd  *exec.Cmd
	hits atomic.Int64   // lines printed: one a hit
	read sync.WaitGroup // the readers of its stdout and stderr

	// mu guards notices and first.
	mu      sync.Mutex
	notices int    // lines on stderr: the timeline's notices, errors
	first   string // the first of them
}

// startTimeline starts the timeline on the fleet at url for tracepoint
// tp, from 10 minutes back (so that it misses none of tp's hits however
// late it connects) and then live.
func startTimeline(url, tp string) (*timelineProc, error) {
	t := &timelineProc{}
	t.cmd = exec.Command(*bin, "timeline", "--nats", url, "--tracepoint", tp, "--since", "10m", "--follow", "--json")
	out, err := t.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errs, err := t.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := t.cmd.Start(); err != nil {
		return nil, err
	}
	t.read.Go(func() {
		buf := make([]byte, 256<<10)
		for {
			n, err := out.Read(buf)
			t.hits.Add(int64(bytes.Count(buf[:n], []byte{'\n'})))
			if err != nil {
				return
			}
		}
	})
	t.read.Go(func() {
		sc := bufio.NewScanner(errs)
		for sc.Scan() {
			t.mu.Lock()
			if t.notices++; t.notices == 1 {
				t.first = sc.Text()
			}
			t.mu.Unlock()
		}
		io.Copy(io.Discard, errs)
	})
	return t, nil
}

// said returns how many lines the timeline wrote to stderr, and the first.
func (t *timelineProc) said() (int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.notices, t.first
}

// cpu is the timeline's CPU seconds so far.
func (t *timelineProc) cpu() float64 { return procCPU(t.cmd.Process.Pid) }

func (t *timelineProc) stop() {
	t.cmd.Process.Kill()
	t.read.Wait()
	t.cmd.Wait()
}
