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
	"sort"
	"strings"
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
	wait := fs.Bool("wait", false, "keep waiting when every process has refused the tracepoint or ended (default: exit 1 with the reasons)")
	revision := fs.String("revision", "", "take processes without vcs.revision to run `REV` (a commit or tag of the checkout), rather than finding it from their version strings or debug info")
	verbose := fs.Bool("v", false, "list every process that lacks the file, rather than counting them")
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
	if spec.Location, local, err = syncLocation(ctx, c, pos[0], loc, *revision, stderr); err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	loc = spec.Location

	// refused ends the run when nothing can produce a hit any more.
	runCtx, refused := context.WithCancelCause(ctx)
	defer refused(nil)
	if *dur > 0 {
		var cancel context.CancelFunc
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
	if local != nil {
		// Revisions that start from now on get their own line too. The
		// following ends before the lease removes the tracepoint, which
		// it would otherwise declare again.
		local.setMapped(spec.Location)
		followCtx, stopFollowing := context.WithCancel(runCtx)
		followed := make(chan struct{})
		go func() {
			defer close(followed)
			follow(followCtx, c, lease, spec, pos[0], *revision, local, stderr)
		}()
		defer func() {
			stopFollowing()
			<-followed
		}()
	}
	board := &statusBoard{stderr: stderr, verbose: *verbose, file: loc.Path, silent: c.Silent}
	if !*wait {
		board.giveUp = refused
	}
	go board.report(runCtx, statuses)

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
		if local.unmapped(&h.Hit) {
			// Its line is the checkout's number in another revision: not
			// shown, as the line may not be the one meant.
			fmt.Fprintf(stderr, "riptrace: left out a hit of %s[%d]: revision %s ran at line %d before the line was mapped into it\n", h.Process.Exe, h.Pid, fleet.ShortRevision(h.Process.Revision), h.Line)
			continue
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
		if local.unmapped(&h.Hit) {
			continue
		}
		n++
		if err := printTraced(stdout, enc, &h, *asJSON, *showStack, local); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "riptrace: %d hits; removing tracepoint %s\n", n, spec.ID)
	var nothing errNothingToTrace
	if err := context.Cause(runCtx); errors.As(err, &nothing) {
		return err
	}
	return nil
}

// printTraced prints one hit of `riptrace trace`.
func printTraced(w io.Writer, enc *json.Encoder, h *fleet.Placed, asJSON, stack bool, local *checkout) error {
	if asJSON {
		fillEmpty(&h.Hit)
		out := tracedJSON{Placed: h}
		if file, line, ok := local.local(&h.Hit); ok {
			out.Checkout = &checkoutLine{File: mustRel(local.ws.Root, file), Line: line}
		}
		return enc.Encode(out)
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

// tracedJSON is one hit of `riptrace trace --json`: the hit, and where its
// line is in the checkout when that differs from where it ran (another
// revision), as the text form's "in the checkout" line says.
type tracedJSON struct {
	*fleet.Placed
	Checkout *checkoutLine `json:"checkout,omitempty"`
}

// checkoutLine is a line of the checkout: File relative to its root.
type checkoutLine struct {
	File string `json:"file"`
	Line int    `json:"line"`
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

// settle is how long the statuses of a tracepoint must stay all refused or
// ended before `riptrace trace` gives up: agents report one after another,
// and a process that refused may be followed by one that installs.
const settle = 3 * time.Second

// errNothingToTrace ends `riptrace trace` when every process that reported
// on the tracepoint refused it or ended, and none is pending.
type errNothingToTrace struct{ reasons []string }

func (e errNothingToTrace) Error() string {
	return fmt.Sprintf("no process can produce a hit: %s. Fix the location or condition, or pass --wait to wait for a process that can", strings.Join(e.reasons, "; "))
}

// statusBoard follows the status entries of one tracepoint: it prints every
// change on stderr, with one line for all the processes that lack the
// file, a hint if no agent reports at all, and calls giveUp (if set) once
// nothing can produce a hit.
type statusBoard struct {
	stderr  io.Writer
	verbose bool
	file    string
	giveUp  func(error)
	// silent returns the hosts, of those asked, whose agents fell silent
	// (fleet.Client.Silent); nil checks none.
	silent func(context.Context, []string) (map[string]time.Time, error)

	latest map[string]fleet.Status // host/pid → the entry, while not deleted
	noFile map[string]fleet.Status // host/pid → the entries that lack the file
	gone   map[string]bool         // hosts whose agents were said to be gone
}

// livenessEvery is how often the hosts of live entries are checked for a
// silent agent: a status entry of a killed agent stays "installed".
const livenessEvery = 5 * time.Second

// checkLiveness says, once per change, when the agent of a host that has
// live entries falls silent, and when it is heard again.
func (b *statusBoard) checkLiveness(ctx context.Context) {
	hosts := make(map[string]bool)
	for _, st := range b.latest {
		if st.State != fleet.StateError && st.State != fleet.StateDone {
			hosts[st.Host] = true
		}
	}
	for h := range b.gone {
		hosts[h] = true
	}
	if len(hosts) == 0 || b.silent == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, livenessEvery)
	defer cancel()
	silent, err := b.silent(cctx, sortedKeys(hosts))
	if err != nil {
		return // the next check tries again; a failed read says nothing of the agents
	}
	for _, h := range sortedKeys(hosts) {
		last, quiet := silent[h]
		switch {
		case quiet && !b.gone[h]:
			b.gone[h] = true
			since := "its heartbeat is gone"
			if !last.IsZero() {
				since = fmt.Sprintf("no heartbeat for %s", time.Since(last).Round(time.Second))
			}
			fmt.Fprintf(b.stderr, "riptrace: host %s: its agent is gone (%s): its processes send no hits and their statuses above are stale. Restart the agent there; this trace goes on\n", h, since)
		case !quiet && b.gone[h]:
			delete(b.gone, h)
			fmt.Fprintf(b.stderr, "riptrace: host %s: its agent is back\n", h)
		}
	}
}

func (b *statusBoard) report(ctx context.Context, ch <-chan fleet.StatusEvent) {
	hint := time.NewTimer(5 * time.Second)
	defer hint.Stop()
	quiet := time.NewTimer(settle)
	quiet.Stop()
	defer quiet.Stop()
	last := make(map[string]string) // host/pid → what was printed
	saidNoFile := 0
	b.latest = make(map[string]fleet.Status)
	b.noFile = make(map[string]fleet.Status)
	b.gone = make(map[string]bool)
	liveness := time.NewTicker(livenessEvery)
	defer liveness.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-liveness.C:
			b.checkLiveness(ctx)
		case <-hint.C:
			fmt.Fprintln(b.stderr, "riptrace: no agent has reported on this tracepoint yet: check `riptrace hosts` and the --hosts/--processes selectors")
		case <-quiet.C:
			if n := len(b.noFile); n != saidNoFile {
				saidNoFile = n
				if n == 1 {
					for _, st := range b.noFile {
						printStatus(b.stderr, fleet.StatusEvent{Status: st})
					}
				} else {
					fmt.Fprintf(b.stderr, "riptrace: %d processes not traced: no source file of theirs ends in %s (-v lists them)\n", n, b.file)
				}
			}
			if reasons := b.refusals(); reasons != nil && b.giveUp != nil {
				b.giveUp(errNothingToTrace{reasons})
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return
			}
			hint.Stop()
			key := fmt.Sprintf("%s/%d", ev.Host, ev.Pid)
			prev, known := b.latest[key]
			if ev.Deleted {
				delete(b.latest, key)
			} else {
				b.latest[key] = ev.Status
			}
			quiet.Reset(settle)
			if ev.Deleted {
				// A deletion carries only its key: the entry it ends names
				// the process, and an agent says why in a last entry
				// (done) before it withdraws one while the tracepoint stands.
				delete(last, key)
				delete(b.noFile, key)
				if known && (prev.State == fleet.StateDone || prev.Pid == 0 && prev.State == fleet.StatePending) {
					continue // said already, or a process matched and says so itself
				}
				if known {
					ev.Status = prev
				}
				printStatus(b.stderr, ev)
				continue
			}
			said := fmt.Sprint(ev.State, ev.Message)
			if ev.State == fleet.StateThrottled {
				said = fmt.Sprint(ev.State) // its count changes at every report
			}
			if last[key] == said {
				continue // only the hit count changed
			}
			last[key] = said
			if !b.verbose && !ev.Deleted && ev.State == fleet.StateError && ev.Code == fleet.CodeNoFile && ev.Pid != 0 {
				// A fleet-wide trace meets many programs that do not
				// have the file: they are simply not traced.
				// Counted here, said in one line once the reports settle.
				b.noFile[key] = ev.Status
				continue
			}
			printStatus(b.stderr, ev)
		}
	}
}

// refusals returns the reasons why no process can produce a hit, or nil
// while one can: an entry installed, throttled or pending.
func (b *statusBoard) refusals() []string {
	if len(b.latest) == 0 {
		return nil
	}
	var reasons, noFile []string
	for key, st := range b.latest {
		reason := fmt.Sprintf("%s: %s", who(st), st.Message)
		switch st.State {
		case fleet.StateError:
			if _, ok := b.noFile[key]; ok {
				noFile = append(noFile, reason)
				continue
			}
			reasons = append(reasons, reason)
		case fleet.StateDone:
			reasons = append(reasons, fmt.Sprintf("%s: done: %s", who(st), st.Message))
		default:
			return nil
		}
	}
	sort.Strings(reasons)
	if len(noFile) == 1 {
		reasons = append(reasons, noFile[0])
	} else if len(noFile) > 1 {
		reasons = append(reasons, fmt.Sprintf("%d processes have no source file ending in %s", len(noFile), b.file))
	}
	return reasons
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
