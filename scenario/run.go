package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// Options tune a run.
type Options struct {
	// Log receives the services' output and the embedded agent's log.
	Log io.Writer
	// Progress receives a line per phase.
	Progress io.Writer
	// Backend is the embedded agent's default backend: auto (default),
	// ebpf or delve.
	Backend string
	// Record, if set, receives Run's recording (Runner.Record), for Replay.
	Record io.Writer
	// NATSGrace is how long the connection to NATS may be down before
	// the run fails (default DefaultNATSGrace).
	NATSGrace time.Duration
}

// Timing is where a run's wall time went.
type Timing struct {
	Start    time.Duration `json:"start"`    // the fleet and the services
	Attach   time.Duration `json:"attach"`   // declaring tracepoints until installed
	Steps    time.Duration `json:"steps"`    // the steps
	Settle   time.Duration `json:"settle"`   // waiting for the last hits
	Evaluate time.Duration `json:"evaluate"` // the expectations
	Stop     time.Duration `json:"stop"`     // removing tracepoints, stopping services
}

// Runner is a scenario being run: its fleet, services and tracepoints are
// up until Close. A Runner's methods are not safe for concurrent use.
type Runner struct {
	s     *Scenario
	opts  Options
	fleet *fleetConn
	// services in start order, started (as the steps' shells are) by spawn.
	services []*service
	spawn    *spawner
	vars     map[string]string
	// ids maps tracepoint names to their fleet ids, and back.
	ids   map[string]string
	names map[string]string
	hits  *collector
	grpc  grpcClients
	// watch notices the fleet vanishing; watching says its goroutine runs.
	watch    *fleetWatch
	watching bool
	// agentWatch follows the agents' heartbeats; nil if it could not.
	agentWatch *fleet.HostWatch
	// hosts are those the tracepoints were installed on: settling waits
	// for their watermarks.
	hosts []string
	// Timing is filled in as the run goes.
	Timing Timing
	closed bool
}

// Start brings the scenario up: the fleet, the services in order, then the
// tracepoints, each installed before Start returns. On error everything
// started is stopped again.
func Start(ctx context.Context, s *Scenario, opts Options) (_ *Runner, err error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	// r is not the result: a failed start returns nil, and what it
	// started is stopped here.
	r := &Runner{s: s, opts: opts, vars: map[string]string{}, ids: map[string]string{}, names: map[string]string{}, spawn: newSpawner()}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	t0 := time.Now()
	r.progress("starting the fleet and %d services", len(s.Services))
	r.watch = newFleetWatch()
	if s.Fleet != nil {
		r.fleet, err = joinFleet(ctx, s.Dir, s.Fleet, r.watch.options())
		r.watch.url = s.Fleet.NATS
	} else {
		r.fleet, err = startFleet(ctx, serviceGlobs(s), &r.opts, r.watch.options())
	}
	if err != nil {
		return nil, err
	}
	for i := range s.Services {
		sv, err := startService(ctx, r.spawn, s.Dir, &s.Services[i], r.vars, opts.Log)
		if err != nil {
			return nil, err
		}
		r.services = append(r.services, sv)
		r.watch.service(sv)
	}
	r.Timing.Start = time.Since(t0)

	t0 = time.Now()
	r.progress("declaring %d tracepoints", len(s.Tracepoints))
	run := make([]byte, 4)
	rand.Read(run)
	prefix := "scn-" + hex.EncodeToString(run) + "-"
	for _, tp := range s.Tracepoints {
		r.ids[tp.Name] = prefix + tp.Name
		r.names[prefix+tp.Name] = tp.Name
	}
	ids := make([]string, 0, len(r.ids))
	for _, id := range r.ids {
		ids = append(ids, id)
	}
	// The reader opens before any tracepoint exists: no hit is missed.
	reader, err := r.fleet.client.Hits(ctx, fleet.HitOptions{Tracepoints: ids})
	if err != nil {
		return nil, err
	}
	r.hits = newCollector(reader, r.names)
	var agents agentsFunc
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	// The watch logs its rewatches after a reconnect; it needs a logger.
	if r.agentWatch, err = r.fleet.client.WatchHosts(ctx, slog.New(slog.NewTextHandler(logw, nil))); err != nil {
		r.progress("%v; a vanishing agent will show only as missing hits", err)
	} else {
		agents = r.agents
	}
	r.watching = true
	grace := opts.NATSGrace
	if grace <= 0 {
		grace = DefaultNATSGrace
	}
	go r.watch.run(grace, agents)
	// The fleet vanishing while the tracepoints install ends the wait.
	ctx, unguard := r.watch.guard(ctx)
	defer unguard()
	defer func() {
		if lost := r.watch.err(); err != nil && lost != nil {
			err = lost
		}
	}()
	specs, err := r.specs(ctx)
	if err != nil {
		return nil, err
	}
	// Declared together, installed in parallel: each waits on its own
	// process.
	errs := make([]error, len(specs))
	hosts := make([]string, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Add(1)
		go func() { defer wg.Done(); hosts[i], errs[i] = r.declare(ctx, spec) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if !slices.Contains(r.hosts, h) {
			r.hosts = append(r.hosts, h)
		}
	}
	r.hits.watchHosts(r.hosts)
	r.Timing.Attach = time.Since(t0)
	return r, nil
}

func (r *Runner) progress(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "==> "+format+"\n", args...)
	}
}

// agents lists the agents the tracepoints were installed on whose
// heartbeats are gone (an entry of Name alone: withdrawn), and whether
// reading hits stopped. Nothing is judged before the heartbeats are in.
func (r *Runner) agents() (gone []fleet.HostEntry, at time.Time, stopped error) {
	hosts, at, stopped := r.hits.depends()
	if stopped != nil {
		return nil, at, stopped
	}
	select {
	case <-r.agentWatch.Synced():
	default:
		return nil, time.Time{}, nil
	}
	list := r.agentWatch.List()
	for _, h := range hosts {
		i := slices.IndexFunc(list, func(e fleet.HostEntry) bool { return e.Name == h })
		switch {
		case i < 0:
			gone = append(gone, fleet.HostEntry{Name: h})
		case list[i].Gone:
			gone = append(gone, list[i])
		}
	}
	return gone, time.Time{}, nil
}

// Vars are the variables steps may name: NAME.pid of each service and the
// named groups of its ready.log.
func (r *Runner) Vars() map[string]string { return r.vars }

// specs builds the fleet specs of the tracepoints, their lines resolved the
// way the CLI resolves them (source.Resolve).
func (r *Runner) specs(ctx context.Context) ([]*fleet.Spec, error) {
	lines := make([]source.Line, len(r.s.Tracepoints))
	for i, tp := range r.s.Tracepoints {
		file, line, err := tracepointLine(r.s.Dir, &tp)
		if err != nil {
			return nil, fmt.Errorf("tracepoint %s: %w", tp.Name, err)
		}
		lines[i] = source.Line{File: file, Line: line}
	}
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	res := source.Resolve(hctx, r.fleet.client, nil, lines)
	cancel()
	if res.FleetErr != nil {
		r.progress("%v; tracing the checkout's lines everywhere", res.FleetErr)
	}
	var specs []*fleet.Spec
	for i, tp := range r.s.Tracepoints {
		if res.Errs[i] != nil {
			return nil, fmt.Errorf("tracepoint %s: %w", tp.Name, res.Errs[i])
		}
		capture := fleet.DefaultCapture
		capture.Exprs = tp.Capture
		capture.Locals = !tp.NoLocals
		if tp.StackDepth > 0 {
			capture.StackDepth = tp.StackDepth
		}
		rate := tp.MaxHitsPerSecond
		if rate == 0 {
			rate = DefaultMaxHitsPerSecond
		}
		spec := &fleet.Spec{
			ID:           r.ids[tp.Name],
			Location:     res.Locations[i],
			Selector:     fleet.Selector{Hosts: tp.Hosts, Processes: tp.Processes},
			Condition:    tp.Condition,
			HitCondition: tp.HitCondition,
			LogMessage:   tp.Log,
			Capture:      capture,
			// The expiry removes the tracepoints of a run that died
			// before it could.
			Limits:  fleet.Limits{MaxHits: tp.MaxHits, MaxHitsPerSecond: rate, ExpiresAt: time.Now().Add(r.timeout() + time.Minute)},
			Owner:   owner(),
			Backend: tp.Backend,
		}
		if tp.Service != "" {
			sv := r.service(tp.Service)
			spec.Selector.Pids = []int{sv.cmd.Process.Pid}
		} else if r.s.Fleet != nil {
			spec.Selector.Hosts = append(spec.Selector.Hosts, r.s.Fleet.Hosts...)
			spec.Selector.Processes = append(spec.Selector.Processes, r.s.Fleet.Processes...)
		}
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("tracepoint %s: %w", tp.Name, err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func (r *Runner) timeout() time.Duration {
	if r.s.Timeout > 0 {
		return r.s.Timeout
	}
	return DefaultTimeout
}

func (r *Runner) service(name string) *service {
	for _, sv := range r.services {
		if sv.name == name {
			return sv
		}
	}
	return nil
}

func owner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("riptrace run (pid %d on %s)", os.Getpid(), host)
}

// declare declares spec and waits until a process reports it installed, so
// that no step runs before its tracepoints are live. It returns the host
// the process runs on.
func (r *Runner) declare(ctx context.Context, spec *fleet.Spec) (string, error) {
	name := r.names[spec.ID]
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	events, err := r.fleet.client.WatchStatus(wctx, spec.ID)
	if err != nil {
		return "", err
	}
	if err := r.fleet.client.Declare(ctx, spec); err != nil {
		return "", fmt.Errorf("declaring tracepoint %s: %w", name, err)
	}
	for ev := range events {
		switch ev.State {
		case fleet.StateInstalled:
			r.progress("tracepoint %s at %s: installed on %s pid %d", name, spec.Location, ev.Host, ev.Pid)
			return ev.Host, nil
		case fleet.StateError:
			return "", fmt.Errorf("tracepoint %s at %s on %s pid %d: %s", name, spec.Location, ev.Host, ev.Pid, ev.Message)
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("tracepoint %s at %s was installed in no process within 60s: check that its service or selector names a running Go process (riptrace hosts lists them)", name, spec.Location)
}

// Close removes the tracepoints and stops the services (last started
// first) and the fleet it started. It is safe to call more than once.
func (r *Runner) Close() {
	if r == nil || r.closed {
		return
	}
	r.closed = true
	t0 := time.Now()
	if r.watching {
		r.watch.close()
		<-r.watch.done
	}
	if r.agentWatch != nil {
		r.agentWatch.Stop()
	}
	if r.hits != nil {
		r.hits.close()
	}
	if r.fleet != nil && r.fleet.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, id := range r.ids {
			r.fleet.client.Remove(ctx, id)
		}
		cancel()
	}
	r.grpc.close()
	var wg sync.WaitGroup
	for _, sv := range r.services {
		wg.Add(1)
		go func() { defer wg.Done(); sv.stop() }()
	}
	wg.Wait()
	if r.spawn != nil {
		r.spawn.stop()
	}
	if r.fleet != nil {
		r.fleet.close()
	}
	r.Timing.Stop = time.Since(t0)
}

// Check waits for the hits to settle, then evaluates exps (the scenario's
// own when none are given) over every hit of the run so far.
func (r *Runner) Check(ctx context.Context, exps ...Expectation) *Result {
	if len(exps) == 0 {
		exps = r.s.Expect
	}
	t0 := time.Now()
	gctx, unguard := r.watch.guard(ctx)
	note := r.settle(gctx)
	unguard()
	lost := r.watch.err()
	if lost != nil {
		note = "" // the loss says why settling stopped
	}
	r.Timing.Settle = time.Since(t0)
	t0 = time.Now()
	hits := r.hits.snapshot()
	tolerance := DefaultClockTolerance
	if r.s.ClockTolerance != nil {
		tolerance = *r.s.ClockTolerance
	}
	res := Evaluate(hits, exps, tolerance)
	res.Name = r.s.Name
	if note != "" {
		res.Notes = append(res.Notes, note)
	}
	r.Timing.Evaluate = time.Since(t0)
	for _, sv := range r.services {
		if sv.exited() {
			res.Errors = append(res.Errors, (&ServiceExitedError{Name: sv.name, State: fmt.Sprint(sv.cmd.ProcessState), Tail: sv.tail()}).Error())
		}
	}
	if err := r.hits.err(); err != nil && lost == nil {
		res.Errors = append(res.Errors, fmt.Sprintf("reading hits: %v: the hits may be incomplete", err))
	}
	// A service's exit is reported above, by every service that exited.
	var fl *FleetLostError
	if errors.As(lost, &fl) {
		res.Errors = append(res.Errors, lost.Error())
	}
	return res
}

// settle waits until the hits of the steps are in: every agent the
// tracepoints were installed on has promised, by a watermark, every hit it
// captured before the steps ended, and no hit has come for the scenario's
// Quiet period (the only sign from an agent that sends no watermarks). It
// waits at most Settle; what it could not wait for is returned as a note.
// The end of the steps is read on this machine's clock and compared with
// the agents' in coordinated time (the server's): a runner far from the
// server should keep its clock synchronised.
func (r *Runner) settle(ctx context.Context) (note string) {
	quiet, most := r.s.Quiet, r.s.Settle
	if quiet <= 0 {
		quiet = DefaultQuiet
	}
	if most <= 0 {
		most = DefaultSettle
	}
	start := time.Now()
	end := start.UnixNano()
	timeout := time.NewTimer(most)
	defer timeout.Stop()
	for {
		late, changed := r.hits.behind(r.hosts, end)
		// A hit may still be on its way from the last step: wait a quiet
		// period after the steps too, not only after the last hit.
		last := r.hits.lastArrival()
		if last.Before(start) {
			last = start
		}
		wait := quiet - time.Since(last)
		if len(late) == 0 && wait <= 0 {
			return ""
		}
		if wait <= 0 {
			wait = quiet
		}
		select {
		case <-ctx.Done():
			return "settling: " + context.Cause(ctx).Error()
		case <-timeout.C:
			if len(late) > 0 {
				return fmt.Sprintf("the agents of %s did not confirm within %v (settle) that every hit of the steps was in: hits may be missing", strings.Join(late, ", "), most)
			}
			return ""
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// Run runs s from start to end: Start, the steps, Check, Close. The error
// is for a run that could not happen (a service not ready, a tracepoint
// refused); a failed expectation is in the Result.
func Run(ctx context.Context, s *Scenario, opts Options) (*Result, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := Start(ctx, s, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	t0 := time.Now()
	r.progress("running %d steps", len(s.Steps))
	stepErr := r.Do(ctx, s.Steps...)
	r.Timing.Steps = time.Since(t0)
	r.progress("settling and evaluating %d expectations over %d hits so far", len(s.Expect), r.hits.total())
	res := r.Check(ctx)
	// A step ended by the fleet's loss or a service's exit: Check
	// reports either.
	var lost *FleetLostError
	var exited *ServiceExitedError
	if stepErr != nil && !errors.As(stepErr, &lost) && !errors.As(stepErr, &exited) {
		res.Errors = append([]string{stepErr.Error()}, res.Errors...)
	}
	if opts.Record != nil {
		if err := r.Record(opts.Record, res); err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	r.Close()
	res.Timing = r.Timing
	return res, nil
}

// tracepointLine is the local file and line tp names.
func tracepointLine(dir string, tp *Tracepoint) (string, int, error) {
	if tp.Function != "" {
		// The function may be anywhere in the module the scenario is in.
		root := dir
		if _, modDir, _, ok := source.ModuleOf(filepath.Join(dir, "scenario")); ok {
			root = modDir
		}
		return source.LocateFunction(root, tp.Function)
	}
	i := strings.LastIndexByte(tp.At, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("at %q: write FILE:LINE or FILE:@MARK", tp.At)
	}
	file, where := tp.At[:i], tp.At[i+1:]
	if !filepath.IsAbs(file) {
		file = filepath.Join(dir, file)
	}
	if mark, ok := strings.CutPrefix(where, "@"); ok {
		line, err := markerLine(file, mark)
		return file, line, err
	}
	var line int
	if _, err := fmt.Sscanf(where, "%d", &line); err != nil || line <= 0 || fmt.Sprint(line) != where {
		return "", 0, fmt.Errorf("at %q: the line must be a number from 1, or @MARK", tp.At)
	}
	return file, line, nil
}

// markerLine finds the one line of file marked //@trace(mark).
func markerLine(file, mark string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("reading %s for the line marked @trace(%s): %w", file, mark, err)
	}
	found := 0
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "@trace("+mark+")") {
			if found != 0 {
				return 0, fmt.Errorf("%s marks @trace(%s) twice, on lines %d and %d: keep one", file, mark, found, i+1)
			}
			found = i + 1
		}
	}
	if found == 0 {
		return 0, fmt.Errorf("%s has no line marked //@trace(%s)", file, mark)
	}
	return found, nil
}

var errNoStep = errors.New("a step does nothing: give it http, grpc, sh, until or parallel")
