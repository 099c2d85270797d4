package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// traceLease is how long a declared tracepoint outlives a `riptrace trace`
// that died without removing it. The command renews it while it runs.
const traceLease = time.Minute

func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace", "[flags] FILE:LINE", stderr)
	var conn connFlags
	conn.register(fs)
	var hosts, procs, exprs stringList
	fs.Var(&hosts, "hosts", "trace only on hosts matching `GLOB` (repeatable)")
	fs.Var(&procs, "processes", "trace only processes whose module path, main package or executable name matches `GLOB` (repeatable)")
	fs.Var(&exprs, "expr", "also capture the Go `EXPR`ession (repeatable)")
	group := fs.String("group", "", "group hits by request: capture the Go `EXPR`ession (a request or trace id) and label each hit with its value")
	cond := fs.String("cond", "", "report a hit only when the Go `EXPR`ession is true")
	hitCond := fs.String("hit-cond", "", "report only hits whose count satisfies `COND` (\"5\", \">= 10\", \"% 2\")")
	logMsg := fs.String("log", "", "log `MSG` with {expr} interpolation on each hit")
	count := fs.Int("count", 0, "exit after `N` hits (0: no limit)")
	dur := fs.Duration("for", 0, "exit after `DURATION` (0: until interrupted)")
	rate := fs.Int("rate", fleet.DefaultMaxHitsPerSecond, "at most `N` hits per second per process; the rest are counted as dropped")
	depth := fs.Int("stack", 8, "capture `N` stack frames")
	showStack := fs.Bool("show-stack", false, "print the captured stack under each hit")
	asJSON := fs.Bool("json", false, "print one JSON object per hit per line")
	backend := fs.String("backend", "", "serve the tracepoint with `BACKEND`: auto, ebpf or delve (default: the agent's --backend)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usageError{"trace takes exactly one FILE:LINE"}
	}
	loc, err := parseLocation(pos[0])
	if err != nil {
		return err
	}
	capture := fleet.DefaultCapture
	capture.Exprs, capture.StackDepth = exprs, *depth
	if *group != "" && !slices.Contains(capture.Exprs, *group) {
		capture.Exprs = append(capture.Exprs, *group)
	}
	spec := fleet.Spec{
		ID:           newID("trace"),
		Location:     loc,
		Selector:     fleet.Selector{Hosts: hosts, Processes: procs},
		Condition:    *cond,
		HitCondition: *hitCond,
		LogMessage:   *logMsg,
		Capture:      capture,
		Limits:       fleet.Limits{MaxHitsPerSecond: *rate},
		Owner:        owner("riptrace trace"),
		Backend:      *backend,
	}
	if err := spec.Validate(); err != nil {
		return usageError{err.Error()}
	}

	c, err := conn.connect(ctx, "riptrace trace")
	if err != nil {
		return err
	}
	defer c.Close()
	// Each revision running in the fleet gets its own line.
	var local *checkout
	if spec.Location, local, err = syncLocation(ctx, c, pos[0], loc, stderr); err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	loc = spec.Location

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *dur > 0 {
		runCtx, cancel = context.WithTimeout(runCtx, *dur)
		defer cancel()
	}
	// Open the readers before declaring, so that no hit or status is missed.
	topts := fleet.TimelineOptions{}
	if *group != "" {
		topts.Group = fleet.GroupBy(*group)
	}
	hits, err := c.Timeline(runCtx, fleet.HitOptions{Tracepoints: []string{spec.ID}}, topts)
	if err != nil {
		return err
	}
	defer hits.Close()
	hits.Notice = func(s string) { fmt.Fprintf(stderr, "riptrace: timeline: %s\n", s) }
	statuses, err := c.WatchStatus(runCtx, spec.ID)
	if err != nil {
		return err
	}
	lease := c.NewLease(traceLease)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lease.Close(ctx); err != nil {
			fmt.Fprintf(stderr, "riptrace: %v; it expires by itself within %s\n", err, traceLease)
		}
	}()
	if err := lease.Declare(ctx, &spec); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "riptrace: tracing %s as %s (Ctrl-C to stop)\n", loc, spec.ID)
	go reportStatus(runCtx, statuses, stderr)

	enc := json.NewEncoder(stdout)
	n := 0
	for *count == 0 || n < *count {
		h, err := hits.Next(runCtx)
		if err != nil {
			if runCtx.Err() != nil {
				break
			}
			var fe *fleet.Error
			if errors.As(err, &fe) {
				fmt.Fprintf(stderr, "riptrace: skipping a bad message: %v\n", err)
				continue
			}
			return err
		}
		n++
		if err := printTraced(stdout, enc, &h, *asJSON, *showStack, local); err != nil {
			return err
		}
	}
	// Hits still held for the timeline's order are shown before leaving.
	for _, h := range hits.Flush() {
		if *count > 0 && n >= *count {
			break
		}
		n++
		if err := printTraced(stdout, enc, &h, *asJSON, *showStack, local); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "riptrace: %d hits; removing tracepoint %s\n", n, spec.ID)
	return nil
}

// printTraced prints one hit of `riptrace trace`.
func printTraced(w io.Writer, enc *json.Encoder, h *fleet.Placed, asJSON, stack bool, local *checkout) error {
	if asJSON {
		fillEmpty(&h.Hit)
		return enc.Encode(h)
	}
	printPlaced(w, h, stack)
	if h.Group != "" {
		fmt.Fprintf(w, "    group:  %s\n", h.Group)
	}
	if file, line, ok := local.local(&h.Hit); ok {
		fmt.Fprintf(w, "    in the checkout: %s:%d (revision %s)\n", mustRel(local.ws.Root, file), line, fleet.ShortRevision(h.Process.Revision))
	}
	return nil
}

// fillEmpty makes empty lists print as [] rather than null, so JSON
// consumers see every field.
func fillEmpty(h *fleet.Hit) {
	if h.Args == nil {
		h.Args = []fleet.Variable{}
	}
	if h.Locals == nil {
		h.Locals = []fleet.Variable{}
	}
	if h.Stack == nil {
		h.Stack = []fleet.Frame{}
	}
}

// reportStatus prints every status change on stderr, and a hint if no agent
// reports at all.
func reportStatus(ctx context.Context, ch <-chan fleet.StatusEvent, stderr io.Writer) {
	hint := time.NewTimer(5 * time.Second)
	defer hint.Stop()
	last := make(map[string]string) // host/pid → what was printed
	for {
		select {
		case <-ctx.Done():
			return
		case <-hint.C:
			fmt.Fprintln(stderr, "riptrace: no agent has reported on this tracepoint yet: check `riptrace hosts` and the --hosts/--processes selectors")
		case ev, ok := <-ch:
			if !ok {
				return
			}
			hint.Stop()
			key := fmt.Sprintf("%s/%d", ev.Host, ev.Pid)
			said := fmt.Sprint(ev.Deleted, ev.State, ev.Message)
			if ev.State == fleet.StateThrottled {
				said = fmt.Sprint(ev.Deleted, ev.State) // its count changes at every report
			}
			if last[key] == said {
				continue // only the hit count changed
			}
			last[key] = said
			printStatus(stderr, ev)
		}
	}
}

func newID(kind string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return kind + "-" + hex.EncodeToString(b)
}

func owner(what string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s (pid %d on %s)", what, os.Getpid(), host)
}
