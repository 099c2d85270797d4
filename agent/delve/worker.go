package delve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// A worker keeps its main goroutine on the process's main thread. Delve
// traces from a goroutine locked to its thread, which ends when Delve lets
// go of the process, its thread with it: the kernel then lets go of the
// threads it still traced (Delve's failed attach leaves the main thread of
// the target so, see nativeAttach). But the Go runtime never ends the main
// thread: a goroutine that ends locked to it leaves it parked, tracing on,
// and the target's main thread stayed stopped until the worker exited
// (seen in 1 of some 200 failed attach tries, under thread churn: the
// failed attach waited out releaseWait, then reported the process gone).
// Locked here, during init, the main goroutine keeps the main thread to
// itself.
func init() {
	if os.Getenv(workerEnv) != "" {
		runtime.LockOSThread()
	}
}

// MaybeRunWorker runs this process as a Delve worker if RIPTRACE_DELVE_WORKER
// is set, and then exits; otherwise it returns at once. Call it first thing
// in main (and in TestMain of tests that use Backend).
func MaybeRunWorker() {
	if v := os.Getenv(watchdogEnv); v != "" {
		pid, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "riptrace delve watchdog: bad %s=%q\n", watchdogEnv, v)
			os.Exit(2)
		}
		if err := runWatchdog(pid); err != nil {
			fmt.Fprintf(os.Stderr, "riptrace watchdog for pid %d: %v\n", pid, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	v := os.Getenv(workerEnv)
	if v == "" {
		return
	}
	pid, err := strconv.Atoi(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "riptrace delve worker: bad %s=%q\n", workerEnv, v)
		os.Exit(2)
	}
	budget := 0.0
	if v := os.Getenv(budgetEnv); v != "" {
		if budget, err = strconv.ParseFloat(v, 64); err != nil {
			fmt.Fprintf(os.Stderr, "riptrace delve worker: bad %s=%q\n", budgetEnv, v)
			os.Exit(2)
		}
	}
	if err := serveWorker(pid, budget, os.Getenv(modeEnv) == modeUprobe, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "riptrace delve worker for pid %d: %v\n", pid, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// workerTarget is what a worker serves: a holdTarget (uprobes) or a
// target (Delve's breakpoints).
type workerTarget interface {
	agent.Target
	Stopped() time.Duration
}

// serveWorker attaches to pid (with uprobes if uprobe, else with Delve's
// breakpoints) and serves requests from in until in closes, a detach
// request arrives, a signal asks it to stop, or the target exits. In every
// case but the last, it detaches before it returns: the target runs on
// without breakpoints.
func serveWorker(pid int, budget float64, uprobe bool, in io.Reader, out io.Writer) error {
	// The agent decides when to stop; signals only say it is time to go.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// If the agent dies, writing to it must fail rather than kill the
	// worker with SIGPIPE before it has detached.
	signal.Ignore(syscall.SIGPIPE)

	events := make(chan event, 1024)
	writerDone := make(chan error, 1)
	go func() { writerDone <- writeEvents(out, events) }()
	finish := func(err error) error {
		close(events)
		if werr := <-writerDone; err == nil {
			err = werr
		}
		return err
	}

	ctx := context.Background()
	var t workerTarget
	var pin *pinner
	if uprobe {
		ht, err := attachHold(ctx, pid, budget)
		if err != nil {
			events <- event{Type: "end", Error: fleet.AsError(err)}
			return finish(nil)
		}
		t = ht
	} else {
		j := openJournal()
		dt, err := attach(ctx, pid, budget, j)
		if err != nil {
			j.detached()
			events <- event{Type: "end", Error: fleet.AsError(err)}
			return finish(nil)
		}
		t = dt
		// Pinned once attached: Delve reads the binary info on every
		// CPU, and hands each ptrace request to one locked thread.
		pin, err = pinToOneCPU()
		if err != nil {
			fmt.Fprintf(os.Stderr, "riptrace delve worker for pid %d: running on every CPU, slower per hit: %v\n", pid, err)
		}
	}
	events <- event{Type: "attached"}

	reqs := make(chan request)
	readErr := make(chan error, 1)
	go func() { readErr <- readRequests(in, reqs) }()

	hits := t.Hits()
	// The stopped time reaches the agent with every hit, and now and then
	// without one: dropped hits stop the process too.
	stats := time.NewTicker(time.Second)
	defer stats.Stop()
	for {
		select {
		case <-stats.C:
			events <- event{Type: "stats", Stopped: int64(t.Stopped())}
			if pin != nil {
				if err := pin.check(); err != nil {
					fmt.Fprintf(os.Stderr, "riptrace delve worker for pid %d: running on every CPU, slower per hit: %v\n", pid, err)
					pin = nil
				}
			}
		case h, ok := <-hits:
			if !ok {
				// The target ended on its own: it exited.
				hits = nil
				err := t.Detach(ctx)
				ev := event{Type: "end"}
				var pe agent.ErrProcessExited
				if errors.As(err, &pe) {
					ev.Exited = &pe.Status
				} else if err != nil {
					ev.Error = fleet.AsError(err)
				}
				events <- ev
				return finish(nil)
			}
			hit := h.Hit
			events <- event{Type: "hit", Hit: &hit, Error: h.Fault, Throttle: h.Throttle, DropsOnly: h.DropsOnly, Uncounted: h.Uncounted, Waiting: h.Waiting, Rearm: h.Rearm, Stopped: int64(t.Stopped())}
		case r := <-reqs:
			ev := event{Type: "reply", Seq: r.Seq}
			switch r.Op {
			case "set":
				pl, err := t.Set(ctx, *r.Spec)
				ev.Placement, ev.Error = &pl, asWireError(err)
			case "clear":
				ev.Error = asWireError(t.Clear(ctx, r.ID))
			case "detach":
				ev.Error = asWireError(detachTimeout(t))
				events <- ev
				return finish(nil)
			default:
				ev.Error = fleet.Errorf(fleet.CodeBadRequest, "unknown worker request %q", r.Op)
			}
			events <- ev
		case err := <-readErr:
			// The agent is gone (or sent garbage): leave the target clean.
			derr := detachTimeout(t)
			if err == nil {
				err = derr
			}
			return finish(err)
		case <-sigs:
			return finish(detachTimeout(t))
		}
	}
}

func detachTimeout(t workerTarget) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := t.Detach(ctx)
	var pe agent.ErrProcessExited
	if errors.As(err, &pe) {
		return nil
	}
	return err
}

func asWireError(err error) *fleet.Error {
	if err == nil {
		return nil
	}
	return fleet.AsError(err)
}

// readRequests decodes requests until in ends; it returns nil at EOF.
func readRequests(in io.Reader, reqs chan<- request) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var r request
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("decoding a request from the agent: %w", err)
		}
		if r.Op == "set" && r.Spec == nil {
			return errors.New("set request without a spec")
		}
		reqs <- r
	}
	return sc.Err()
}

// writeEvents is the worker's one writer: it encodes events as JSON lines.
func writeEvents(out io.Writer, events <-chan event) error {
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	var err error
	for ev := range events {
		if err != nil {
			continue // drain, so senders never block
		}
		if err = enc.Encode(&ev); err == nil && len(events) == 0 {
			err = w.Flush()
		}
	}
	if err == nil {
		err = w.Flush()
	}
	return err
}
