package dap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario/recording"
	"github.com/riptrace/riptrace/source"
)

// recentHits is how many hits the REPL's `hits` command can show.
const recentHits = 200

// session is one client's conversation. Its request handlers run on the
// reader goroutine one at a time; the hit pump, the thread watcher and the
// breakpoints' status watchers run beside them and only send events.
type session struct {
	srv       *Server
	w         io.Writer
	ctx       context.Context // ends with the session
	cancelCtx context.CancelFunc
	id        string // in the ids of the session's tracepoints

	queue      chan dap.Message
	writerDone chan struct{}
	// qmu guards qclosed and the closing of queue.
	qmu     sync.RWMutex
	qclosed bool

	// Set by the reader goroutine in initialize and attach, read-only once
	// the goroutines that read them have started.
	clientArgs dap.InitializeRequestArguments
	cfg        *AttachConfig
	client     *fleet.Client
	hosts      *fleet.HostWatch      // the agents, as their heartbeats say
	hits       *fleet.TimelineReader // the hits of the session's tracepoints
	lease      *fleet.Lease          // nil when persisting
	ws         *source.Workspace
	repo       *source.Repo         // the checkout's git repository; nil outside one
	rec        *recording.Recording // replayed instead of a fleet (recording.go); client is nil
	terminated bool
	background sync.WaitGroup // hit pump, thread watcher and ticker
	shown      *hitLog        // what the hits view, the timeline and the console's counts show

	// declMu serializes declaring and removing tracepoints: replace,
	// remap and release. It guards each breakpoint's declared.
	declMu sync.Mutex

	// mu guards the fields below.
	mu           sync.Mutex
	bps          map[string][]*breakpoint // by local file
	fbps         []*breakpoint            // function breakpoints
	byTracepoint map[string]*breakpoint
	nextBP       int
	nextTP       int
	recent       []*fleet.Hit   // the last recentHits hits (and up to as many older), oldest first
	threadIDs    map[string]int // "host/pid" → thread id
	nextThread   int
	nextProgress int
	snap         *snapshot // the open snapshot, if any
}

// breakpoint is one editor breakpoint and the fleet tracepoint it became.
type breakpoint struct {
	id         int
	tracepoint string
	file       string // local
	line       int
	cond       string
	hitCond    string
	logMsg     string
	fn         string             // the function of a function breakpoint
	err        error              // why it cannot be set, found before declaring
	cancel     context.CancelFunc // stops the status watcher
	declared   fleet.Location     // as last declared; ss.declMu guards it

	// settled is closed once every agent that reported has placed the
	// tracepoint or said why not.
	settled    chan struct{}
	settleOnce sync.Once

	// mu guards state.
	mu    sync.Mutex
	state dap.Breakpoint // as last sent
}

func (b *breakpoint) key() string {
	return strings.Join([]string{b.fn, b.file, strconv.Itoa(b.line), b.cond, b.hitCond, b.logMsg}, "\x00")
}

func (b *breakpoint) current() dap.Breakpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func newSession(srv *Server, w io.Writer) *session {
	id := make([]byte, 4)
	rand.Read(id)
	ss := &session{
		srv:          srv,
		w:            w,
		id:           hex.EncodeToString(id),
		queue:        make(chan dap.Message, 1024),
		writerDone:   make(chan struct{}),
		bps:          make(map[string][]*breakpoint),
		byTracepoint: make(map[string]*breakpoint),
		threadIDs:    make(map[string]int),
	}
	ss.shown = newHitLog(ss.localLine)
	return ss
}

func (ss *session) onInitialize(req *dap.InitializeRequest) {
	ss.clientArgs = req.Arguments
	ss.send(&dap.InitializeResponse{Response: ss.response(&req.Request), Body: dap.Capabilities{
		SupportsConfigurationDoneRequest:  true,
		SupportsConditionalBreakpoints:    true,
		SupportsHitConditionalBreakpoints: true,
		SupportsLogPoints:                 true,
		SupportsFunctionBreakpoints:       true,
		SupportsTerminateRequest:          true,
	}})
}

func (ss *session) onAttach(req *dap.AttachRequest) {
	if ss.client != nil || ss.rec != nil {
		ss.sendError(req.Seq, req.Command, ErrAttachedTwice, "this session is already attached: start another debug session for another configuration")
		return
	}
	cfg, err := parseAttach(req.Arguments)
	if err != nil {
		ss.sendError(req.Seq, req.Command, ErrBadConfig, err.Error())
		return
	}
	if cfg.Recording != "" {
		ss.attachRecording(req, cfg)
		return
	}
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.opts.ConnectTimeout)
	defer cancel()
	c, err := ss.srv.connect(ctx, cfg.NATS, fleet.ClientOptions{Prefix: cfg.Prefix, Name: "riptrace dap", Credentials: cfg.Credentials})
	var ce *fleet.CredentialError
	if errors.As(err, &ce) {
		ss.sendError(req.Seq, req.Command, ErrBadConfig, attributeError(ce).Error())
		return
	}
	if err != nil {
		ss.sendError(req.Seq, req.Command, ErrConnecting, fmt.Sprintf("attach: %v; or fix \"nats\" in the launch configuration", err))
		return
	}
	ws, err := source.NewWorkspace(cfg.Cwd)
	if err != nil {
		c.Close()
		ss.sendError(req.Seq, req.Command, ErrBadConfig, (&configError{"cwd", fmt.Sprintf("must be a directory of the local checkout: %v", err)}).Error())
		return
	}
	// Open the hit stream before any tracepoint exists, so no hit is missed.
	// Through the timeline: hits in the order they ran, as every client
	// shows them. Filtered: the server sends the session the hits of its
	// own tracepoints only (follow).
	hits, err := c.Timeline(ss.ctx, fleet.HitOptions{Filtered: true}, cfg.timeline())
	if err != nil {
		c.Close()
		ss.sendError(req.Seq, req.Command, ErrConnecting, fmt.Sprintf("attach: %v", err))
		return
	}
	// The hosts are watched, not asked: the threads view and the mapping
	// of lines ask profile.get only of the selected hosts whose processes
	// changed.
	hw, err := c.WatchHosts(ss.ctx, ss.srv.opts.Log)
	if err != nil {
		hits.Close()
		c.Close()
		ss.sendError(req.Seq, req.Command, ErrConnecting, fmt.Sprintf("attach: %v", err))
		return
	}
	ss.cfg, ss.client, ss.ws, ss.hosts, ss.hits = cfg, c, ws, hw, hits
	ss.repo, _ = source.OpenRepo(ws.Root) // no repository: lines are taken as they are
	if !cfg.Persist {
		ss.lease = c.NewLease(ss.srv.opts.LeaseTTL)
	}
	hits.Notice = func(n string) { ss.output("console", "riptrace: timeline: "+n+"\n") }
	ss.background.Go(func() { ss.pumpHits(hits) })
	ss.background.Go(ss.watchThreads)
	ss.background.Go(ss.tick)
	ss.background.Go(ss.followRevisions)
	ss.send(&dap.AttachResponse{Response: ss.response(&req.Request)})
	ss.send(&dap.InitializedEvent{Event: ss.event("initialized")})
	shown := "the first hits of each breakpoint show here, then a count per second (\"consoleHits\": \"all\" shows every hit)"
	if cfg.ConsoleHits == consoleAll {
		shown = "every hit shows here"
	}
	ss.output("console", fmt.Sprintf("riptrace: attached to the fleet at %s; breakpoints become tracepoints on %s, processes %s, served by the %s backend. Nothing is ever paused: %s.\n"+
		"To look at a hit in Variables and Call Stack, click its breakpoint's code lens or a hit in the RipTrace hits view, or type `snapshot BREAKPOINT`; Continue dismisses it. Type `help` for commands.\n",
		cfg.NATS, globsOrAll(cfg.Hosts, "every host"), globsOrAll(cfg.Processes, "all"), backendName(cfg.Backend), shown))
}

func globsOrAll(globs []string, all string) string {
	if len(globs) == 0 {
		return all
	}
	return strings.Join(globs, ", ")
}

func (ss *session) output(category, text string) {
	ss.send(&dap.OutputEvent{Event: ss.event("output"), Body: dap.OutputEventBody{Category: category, Output: text}})
}

// tracepointOwner declares and removes the session's tracepoints: the
// session's lease, or the client itself when the configuration persists
// them.
type tracepointOwner interface {
	Declare(ctx context.Context, spec *fleet.Spec) error
	Remove(ctx context.Context, id string) error
}

func (ss *session) owner() tracepointOwner {
	if ss.lease != nil {
		return ss.lease
	}
	return ss.client
}

// notAttached says why the session cannot take breakpoints, or "".
func (ss *session) notAttached() string {
	switch {
	case ss.client == nil && ss.rec == nil:
		return "before attach: send attach first (its configuration says which fleet to trace)"
	case ss.terminated:
		return "after terminate: the session's tracepoints are gone; start a new debug session"
	}
	return ""
}

// onSetBreakpoints replaces the breakpoints of one file.
func (ss *session) onSetBreakpoints(req *dap.SetBreakpointsRequest) {
	if why := ss.notAttached(); why != "" {
		ss.sendError(req.Seq, req.Command, ErrNotAttached, "setBreakpoints "+why)
		return
	}
	file := req.Arguments.Source.Path
	if file == "" {
		ss.sendError(req.Seq, req.Command, ErrBadArguments, "setBreakpoints needs source.path: RipTrace sets breakpoints in files of the local checkout")
		return
	}
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	want := req.Arguments.Breakpoints
	if len(want) == 0 {
		for _, l := range req.Arguments.Lines {
			want = append(want, dap.SourceBreakpoint{Line: l})
		}
	}
	if ss.rec != nil {
		lines := make([]int, len(want))
		for i, sb := range want {
			lines[i] = sb.Line
		}
		ss.send(&dap.SetBreakpointsResponse{Response: ss.response(&req.Request), Body: dap.SetBreakpointsResponseBody{Breakpoints: ss.recordedBreakpointsAt(file, lines)}})
		return
	}
	wants := make([]*breakpoint, len(want))
	for i, sb := range want {
		wants[i] = &breakpoint{file: file, line: sb.Line, cond: strings.TrimSpace(sb.Condition), hitCond: strings.TrimSpace(sb.HitCondition), logMsg: sb.LogMessage}
	}
	ss.mu.Lock()
	old := ss.bps[file]
	ss.mu.Unlock()
	keep, result, started := ss.replace(old, wants)
	ss.mu.Lock()
	ss.bps[file] = keep
	ss.mu.Unlock()
	ss.send(&dap.SetBreakpointsResponse{Response: ss.response(&req.Request), Body: dap.SetBreakpointsResponseBody{Breakpoints: result}})
	ss.start(started)
}

// onSetFunctionBreakpoints replaces the function breakpoints: each name is
// found in the local checkout and becomes a tracepoint at the function's
// first statement.
func (ss *session) onSetFunctionBreakpoints(req *dap.SetFunctionBreakpointsRequest) {
	if why := ss.notAttached(); why != "" {
		ss.sendError(req.Seq, req.Command, ErrNotAttached, "setFunctionBreakpoints "+why)
		return
	}
	if ss.rec != nil {
		ss.send(&dap.SetFunctionBreakpointsResponse{Response: ss.response(&req.Request), Body: dap.SetFunctionBreakpointsResponseBody{Breakpoints: ss.recordedFunctionBreakpoints(len(req.Arguments.Breakpoints))}})
		return
	}
	wants := make([]*breakpoint, len(req.Arguments.Breakpoints))
	for i, fb := range req.Arguments.Breakpoints {
		b := &breakpoint{fn: strings.TrimSpace(fb.Name), cond: strings.TrimSpace(fb.Condition), hitCond: strings.TrimSpace(fb.HitCondition)}
		b.file, b.line, b.err = source.LocateFunction(ss.cfg.Cwd, b.fn)
		wants[i] = b
	}
	ss.mu.Lock()
	old := ss.fbps
	ss.mu.Unlock()
	keep, result, started := ss.replace(old, wants)
	ss.mu.Lock()
	ss.fbps = keep
	ss.mu.Unlock()
	ss.send(&dap.SetFunctionBreakpointsResponse{Response: ss.response(&req.Request), Body: dap.SetFunctionBreakpointsResponseBody{Breakpoints: result}})
	ss.start(started)
}

// replace turns the breakpoints old into wants: unchanged ones keep their
// tracepoint, new ones are declared, the rest are removed before it returns
// so that the editor's view and the fleet agree once the response arrives.
// It returns the breakpoints now held, the response's breakpoints (each
// pending, or unverified with why it could not be set: one failure never
// fails the request) and the new ones, whose watchers start once the
// response is queued.
func (ss *session) replace(old, wants []*breakpoint) (keep []*breakpoint, result []dap.Breakpoint, started []*breakpoint) {
	ss.declMu.Lock()
	defer ss.declMu.Unlock()
	prev := make(map[string]*breakpoint)
	for _, b := range old {
		prev[b.key()] = b
	}
	ctx, cancel := context.WithTimeout(ss.ctx, 10*time.Second)
	defer cancel()
	result = make([]dap.Breakpoint, len(wants))
	var fresh []int // the wants to declare
	for i, b := range wants {
		if p, ok := prev[b.key()]; ok && b.err == nil {
			delete(prev, b.key())
			keep = append(keep, p)
			result[i] = p.current()
			continue
		}
		ss.mu.Lock()
		ss.nextBP++
		ss.nextTP++
		b.id = ss.nextBP
		b.tracepoint = fmt.Sprintf("dap-%s-%d", ss.id, ss.nextTP)
		ss.mu.Unlock()
		if b.err != nil {
			result[i] = dap.Breakpoint{Id: b.id, Verified: false, Message: "not set: " + b.err.Error()}
			continue
		}
		fresh = append(fresh, i)
	}
	bs := make([]*breakpoint, len(fresh))
	for j, i := range fresh {
		bs[j] = wants[i]
	}
	locs := ss.locate(bs)
	fids := make([]string, len(bs))
	for j, b := range bs {
		fids[j] = b.tracepoint
	}
	// Read their hits before they exist, so that none is missed.
	ss.follow(ctx, fids)
	for j, i := range fresh {
		b := wants[i]
		src := &dap.Source{Name: filepath.Base(b.file), Path: b.file}
		spec := ss.spec(b, locs[j])
		if err := ss.owner().Declare(ctx, spec); err != nil {
			result[i] = dap.Breakpoint{Id: b.id, Verified: false, Source: src, Line: b.line, Message: fmt.Sprintf("not set: %v", fleet.AsError(err).Message)}
			continue
		}
		if _, ok := ss.cfg.toRemote(b.file); !ok && ss.repo != nil {
			b.declared = spec.Location // followed as revisions start (remap)
		}
		b.state = dap.Breakpoint{Id: b.id, Verified: false, Source: src, Line: b.line, Message: fmt.Sprintf("pending: declared as %s at %s for the %s backend; waiting for agents to report", b.tracepoint, spec.Location, backendName(ss.cfg.Backend))}
		result[i] = b.state
		keep = append(keep, b)
		started = append(started, b)
	}
	for _, b := range prev {
		ss.drop(ctx, b)
	}
	ss.mu.Lock()
	for _, b := range started {
		ss.byTracepoint[b.tracepoint] = b
	}
	ss.mu.Unlock()
	ss.follow(ctx, nil)
	return keep, result, started
}

// follow makes the session's hit reader read the hits of its
// breakpoints' tracepoints and of extra, about to be declared: the server
// filters, so the session receives no hit of another's tracepoint.
func (ss *session) follow(ctx context.Context, extra []string) {
	ss.mu.Lock()
	ids := slices.Collect(maps.Keys(ss.byTracepoint))
	ss.mu.Unlock()
	ids = append(ids, extra...)
	if err := ss.hits.SetTracepoints(ctx, ids); err != nil {
		ss.srv.opts.Log.Warn("reading the hits of the session's tracepoints", "err", err)
	}
}

// start starts the status watchers of new breakpoints.
// With a client that shows progress, the fan-out shows as one progress
// bar until every new breakpoint has settled.
func (ss *session) start(bs []*breakpoint) {
	for _, b := range bs {
		b.settled = make(chan struct{})
		ss.watchStatus(b)
	}
	if len(bs) == 0 || !ss.clientArgs.SupportsProgressReporting {
		return
	}
	ss.mu.Lock()
	ss.nextProgress++
	id := fmt.Sprintf("riptrace-%s-%d", ss.id, ss.nextProgress)
	ss.mu.Unlock()
	ss.send(&dap.ProgressStartEvent{Event: ss.event("progressStart"), Body: dap.ProgressStartEventBody{
		ProgressId: id, Title: "RipTrace", Message: fmt.Sprintf("installing %d breakpoint(s) across the fleet", len(bs)), Percentage: 0,
	}})
	go func() {
		timeout := time.NewTimer(30 * time.Second)
		defer timeout.Stop()
		done := 0
		msg := "every breakpoint placed or refused"
	wait:
		for _, b := range bs {
			select {
			case <-b.settled:
				done++
				ss.send(&dap.ProgressUpdateEvent{Event: ss.event("progressUpdate"), Body: dap.ProgressUpdateEventBody{
					ProgressId: id, Message: fmt.Sprintf("%d of %d breakpoint(s) settled", done, len(bs)), Percentage: 100 * done / len(bs),
				}})
			case <-timeout.C:
				msg = fmt.Sprintf("%d of %d breakpoint(s) settled; the rest are still pending (their breakpoint messages say why)", done, len(bs))
				break wait
			case <-ss.ctx.Done():
				break wait
			}
		}
		ss.send(&dap.ProgressEndEvent{Event: ss.event("progressEnd"), Body: dap.ProgressEndEventBody{ProgressId: id, Message: msg}})
	}()
}

// locate names the lines of bs for the fleet. substitutePath, where a rule
// applies, gives the remote file; otherwise, in a git checkout, the line is
// mapped into every revision the fleet runs, as riptrace trace and the
// language server do, the fleet being asked once for all of bs (see
// source.Resolve).
func (ss *session) locate(bs []*breakpoint) []fleet.Location {
	locs := make([]fleet.Location, len(bs))
	var lines []source.Line
	var at []int // index in bs of each of lines
	for i, b := range bs {
		if remote, ok := ss.cfg.toRemote(b.file); ok {
			locs[i] = fleet.Location{Path: remote, Line: b.line}
			continue
		}
		if ss.repo == nil {
			locs[i] = source.Locate(b.file, b.line) // no repository: lines are taken as they are
			continue
		}
		lines = append(lines, source.Line{File: b.file, Line: b.line, Revision: ss.cfg.Revision})
		at = append(at, i)
	}
	if len(lines) == 0 {
		return locs
	}
	// Each host answers its profile within 5 s (fleet.HostWatch); an
	// agent busy attaching on a loaded machine takes seconds, and without
	// the revisions the line would go out unmapped.
	ctx, cancel := context.WithTimeout(ss.ctx, 10*time.Second)
	defer cancel()
	res := source.Resolve(ctx, selectedHosts{ss}, ss.repo, lines)
	if res.FleetErr != nil {
		ss.srv.opts.Log.Warn("mapping breakpoints into the fleet's revisions", "err", res.FleetErr)
	}
	for j, i := range at {
		locs[i] = res.Locations[j]
	}
	return locs
}

// spec is the fleet tracepoint of b at loc under the session's
// configuration.
func (ss *session) spec(b *breakpoint, loc fleet.Location) *fleet.Spec {
	capture := ss.cfg.Capture
	capture.Exprs = append([]string(nil), capture.Exprs...)
	host, _ := os.Hostname()
	return &fleet.Spec{
		ID:           b.tracepoint,
		Location:     loc,
		Selector:     fleet.Selector{Hosts: ss.cfg.Hosts, Processes: ss.cfg.Processes},
		Condition:    b.cond,
		HitCondition: b.hitCond,
		LogMessage:   b.logMsg,
		Capture:      capture,
		Limits:       fleet.Limits{MaxHitsPerSecond: ss.cfg.MaxHitsPerSecond},
		Backend:      ss.cfg.Backend,
		Owner:        fmt.Sprintf("riptrace dap session %s (pid %d on %s)", ss.id, os.Getpid(), host),
	}
}

// drop removes b's tracepoint and stops watching it.
func (ss *session) drop(ctx context.Context, b *breakpoint) {
	if b.cancel != nil {
		b.cancel()
	}
	if b.settled != nil {
		// Gone counts as settled: progress waits for it no more.
		b.settleOnce.Do(func() { close(b.settled) })
	}
	ss.mu.Lock()
	delete(ss.byTracepoint, b.tracepoint)
	ss.mu.Unlock()
	ss.shown.forget(b.id)
	if err := ss.owner().Remove(ctx, b.tracepoint); err != nil {
		ss.srv.opts.Log.Warn("removing a tracepoint", "tracepoint", b.tracepoint, "err", err)
	}
}

// watchStatus starts b's status watcher: each change of what the agents
// report that changes the breakpoint is sent as a breakpoint event.
func (ss *session) watchStatus(b *breakpoint) {
	ctx, cancel := context.WithCancel(ss.ctx)
	b.cancel = cancel
	ch, err := ss.client.WatchStatus(ctx, b.tracepoint)
	if err != nil {
		ss.srv.opts.Log.Warn("watching a tracepoint's status", "tracepoint", b.tracepoint, "err", err)
		return
	}
	go func() {
		statuses := make(map[string]fleet.Status)
		for ev := range ch {
			key := ev.Host + "/" + strconv.Itoa(ev.Pid)
			if ev.Deleted {
				delete(statuses, key)
			} else {
				statuses[key] = ev.Status
			}
			verified, msg, settled := summarize(statuses, ss.cfg.Backend)
			if settled {
				b.settleOnce.Do(func() { close(b.settled) })
			}
			b.mu.Lock()
			changed := b.state.Verified != verified || b.state.Message != msg
			b.state.Verified, b.state.Message = verified, msg
			state := b.state
			b.mu.Unlock()
			if changed && ctx.Err() == nil {
				ss.send(&dap.BreakpointEvent{Event: ss.event("breakpoint"), Body: dap.BreakpointEventBody{Reason: "changed", Breakpoint: state}})
			}
		}
	}()
}

// summarize turns the agents' statuses of one tracepoint into the
// breakpoint's verified flag and message, and whether every agent that
// reported has an answer for every process (placed or why not).
func summarize(statuses map[string]fleet.Status, backend string) (verified bool, msg string, settled bool) {
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var live, problems, waiting, hostNotes []string
	procs := 0
	settled = len(statuses) > 0
	for _, k := range keys {
		st := statuses[k]
		if st.Pid == 0 {
			if st.Message != "" {
				hostNotes = append(hostNotes, st.Host+": "+st.Message)
			}
			continue
		}
		procs++
		name := fmt.Sprintf("%s %s[%d]", st.Host, st.Process.Exe, st.Pid)
		switch st.State {
		case fleet.StateInstalled:
			live = append(live, name+servedBy(st.Placement))
		case fleet.StateThrottled:
			live = append(live, name+servedBy(st.Placement)+" (throttled)")
		case fleet.StatePending:
			// Being attached or installed: its answer is coming.
			waiting = append(waiting, name+": pending"+suffix(st.Message))
			settled = false
		case fleet.StateDone:
			problems = append(problems, name+": done"+suffix(st.Message))
		default:
			problems = append(problems, name+": "+st.Message)
		}
	}
	switch {
	case len(live) > 0:
		msg = fmt.Sprintf("installed on %d of %d processes (%s)", len(live), procs, strings.Join(live, ", "))
		if others := append(waiting, problems...); len(others) > 0 {
			msg += "; " + strings.Join(others, "; ")
		}
		return true, msg, settled
	case len(waiting) > 0:
		msg = fmt.Sprintf("pending for the %s backend: %s", backendName(backend), strings.Join(append(append(waiting, problems...), hostNotes...), "; "))
	case len(problems) > 0:
		msg = fmt.Sprintf("not installed by the %s backend: %s", backendName(backend), strings.Join(append(problems, hostNotes...), "; "))
	case len(hostNotes) > 0:
		msg = fmt.Sprintf("pending for the %s backend: %s", backendName(backend), strings.Join(hostNotes, "; "))
	default:
		msg = fmt.Sprintf("pending for the %s backend: no agent has reported on it yet (type `hosts` in the debug console, and check the hosts and processes attributes)", backendName(backend))
	}
	return false, msg, settled
}

// backendName names the backend a configuration asks for.
func backendName(b string) string {
	if b == "" || b == "auto" {
		return "auto (eBPF, else Delve)"
	}
	return b
}

// servedBy names the backend that placed a tracepoint in a process.
func servedBy(p *fleet.Placement) string {
	if p == nil || p.Backend == "" {
		return ""
	}
	return " via " + p.Backend
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// pumpHits sends the session's hits as output events in the timeline's
// order.
func (ss *session) pumpHits(r *fleet.TimelineReader) {
	defer r.Close()
	for {
		p, err := r.Next(ss.ctx)
		if err != nil {
			if ss.ctx.Err() != nil {
				return
			}
			var fe *fleet.Error
			if errors.As(err, &fe) {
				ss.srv.opts.Log.Warn("skipping a bad hit", "err", err)
				continue
			}
			ss.output("stderr", fmt.Sprintf("riptrace: reading the hit stream: %v; hits stop here\n", err))
			return
		}
		ss.mu.Lock()
		b := ss.byTracepoint[p.Tracepoint]
		var e *logged
		if b != nil {
			e = &logged{p: p, bp: b.id, fallback: b.file}
			ss.recent = keepLast(ss.recent, &e.p.Hit, recentHits)
		}
		ss.mu.Unlock()
		if b == nil {
			continue // another session's, or a breakpoint just removed
		}
		ss.showHit(b, e)
	}
}

// showHit records a hit of breakpoint b for the views and the console,
// and shows it in the console if the console shows it in full.
func (ss *session) showHit(b *breakpoint, e *logged) {
	if ss.shown.record(e, ss.cfg.ConsoleHits == consoleAll, time.Now()) {
		ss.send(ss.hitEvent(b, &e.p))
	}
	if ss.cfg.Snapshots {
		ss.openSnapshot(b, e.p.Hit, false)
	}
}

// hitEvent renders one hit as an output event linked to its local line: in
// a git checkout, the line of the checkout that the process's revision had.
func (ss *session) hitEvent(b *breakpoint, p *fleet.Placed) *dap.OutputEvent {
	h := &p.Hit
	file, line := ss.localLine(b.file, h)
	text := h.Message
	if b.logMsg == "" || h.Message == "" {
		// No log message, or the agent could not render it (its errors
		// are in the data): the compact line says what there is.
		text = compactHit(h)
	}
	if h.Dropped > 0 {
		text += fmt.Sprintf(" (+%d dropped by the rate limit)", h.Dropped)
	}
	text += requestMark(p) + timelineMarks(p) + unreadableNotes(h)
	data, _ := json.Marshal(p)
	return &dap.OutputEvent{Event: ss.event("output"), Body: dap.OutputEventBody{
		Category: "console",
		Output:   text + "\n",
		Source:   &dap.Source{Name: filepath.Base(file), Path: file},
		Line:     line,
		Data:     data,
	}}
}

// localLine is the line of the checkout where h ran: in a git checkout,
// the line that the process's revision had. Outside the checkout, it is
// the file fallback (the breakpoint's).
func (ss *session) localLine(fallback string, h *fleet.Hit) (string, int) {
	file, line := ss.localFile(h.File), h.Line
	if _, substituted := ss.cfg.toLocal(h.File); !substituted && ss.repo != nil {
		if f, l, err := ss.repo.LocalHit(ss.ws, h.File, h.Line, h.Process); err == nil {
			file, line = f, l
		}
	}
	if file == "" {
		file = fallback
	}
	return file, line
}

// localFile maps a file a process names to the local checkout, or "".
func (ss *session) localFile(remote string) string {
	if l, ok := ss.cfg.toLocal(remote); ok {
		return l
	}
	if l, ok := ss.ws.Local(remote); ok {
		return l
	}
	return ""
}

// requestMark names the request a hit belongs to (fleet.Placed.Group: its
// W3C trace id, or else the session's group attribute), "" for none.
func requestMark(p *fleet.Placed) string {
	if p.Group == "" {
		return ""
	}
	return " [request " + p.Group + "]"
}

// timelineMarks says where a hit's place in the timeline is not to be
// trusted.
func timelineMarks(p *fleet.Placed) string {
	var m string
	if p.Late {
		m += fmt.Sprintf(" [late: ran at %s, before hits shown above]", p.CoordinatedTime.Local().Format("15:04:05.000000"))
	}
	// A hit placed by its arrival (its agent has no clock, say) is not
	// marked line by line: the timeline's notice said so once for its host.
	if p.Uncertain && p.Note == "" {
		m += fmt.Sprintf(" [order uncertain: may have run before #%s]", fleet.HitNumber(p.UncertainWith, p.UncertainWithPart))
	}
	return m
}

// unreadableNotes says, below a hit's line, why each value it marks as not
// captured was not: the line itself words them as lenses and hints do.
func unreadableNotes(h *fleet.Hit) string {
	var sb strings.Builder
	for _, vs := range [][]fleet.Variable{h.Args, h.Exprs} {
		for _, v := range vs {
			if v.Unreadable != "" {
				fmt.Fprintf(&sb, "\n    %s %s: %s", v.Name, v.Shown(), v.Unreadable)
			}
		}
	}
	return sb.String()
}

// compactHit is the one line a hit without a log message shows:
// where it came from and its arguments and captured expressions.
func compactHit(h *fleet.Hit) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s[%d] g%d %s:", h.Host, h.Process.Exe, h.Pid, h.Goroutine, h.Function)
	for _, vs := range [][]fleet.Variable{h.Args, h.Exprs} {
		for _, v := range vs {
			fmt.Fprintf(&sb, " %s=%s", v.Name, v.Shown())
		}
	}
	return sb.String()
}

func (ss *session) onConfigurationDone(req *dap.ConfigurationDoneRequest) {
	ss.send(&dap.ConfigurationDoneResponse{Response: ss.response(&req.Request)})
}

// threadName names a process the way the threads view shows it.
func threadName(host string, p *fleet.Process) string {
	rev := ""
	if p.Revision != "" {
		r := p.Revision
		if len(r) > 7 {
			r = r[:7]
		}
		if p.Modified {
			r += "+"
		}
		rev = ", rev " + r
	}
	return fmt.Sprintf("%s @ %s (pid %d%s)", filepath.Base(p.Exe), host, p.Pid, rev)
}

// selectedHosts are the hosts the session's configuration selects, with
// their profiles: what source.Resolve asks of the fleet.
type selectedHosts struct{ ss *session }

func (s selectedHosts) Hosts(ctx context.Context) ([]fleet.HostEntry, error) {
	sel := fleet.Selector{Hosts: s.ss.cfg.Hosts}
	return s.ss.hosts.Profiles(ctx, sel.MatchHost)
}

func (s selectedHosts) Fingerprint(ctx context.Context, host string, file fleet.Location) (*fleet.Profile, error) {
	return s.ss.hosts.Fingerprint(ctx, host, file)
}

// processes lists the threads the configuration selects, sorted by id.
func (ss *session) processes(ctx context.Context) ([]dap.Thread, error) {
	hosts, err := selectedHosts{ss}.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	sel := fleet.Selector{Hosts: ss.cfg.Hosts, Processes: ss.cfg.Processes}
	var threads []dap.Thread
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, h := range hosts {
		if h.Gone || h.Profile == nil || !sel.MatchHost(h.Name) {
			continue
		}
		for i := range h.Profile.Processes {
			p := &h.Profile.Processes[i]
			if !sel.MatchProcess(p) {
				continue
			}
			id := ss.threadIDLocked(h.Name, p.Pid)
			threads = append(threads, dap.Thread{Id: id, Name: threadName(h.Name, p)})
		}
	}
	// A snapshot's thread is listed even once its process is gone: the
	// editor shows the stopped thread from this list.
	// Its name says which hit the Variables view shows: the lenses move on.
	if ss.snap != nil {
		h := &ss.snap.hit
		i := slices.IndexFunc(threads, func(th dap.Thread) bool { return th.Id == ss.snap.thread })
		if i < 0 {
			threads = append(threads, dap.Thread{Id: ss.snap.thread, Name: fmt.Sprintf("%s @ %s (pid %d)", h.Process.Exe, h.Host, h.Pid)})
			i = len(threads) - 1
		}
		threads[i].Name += ": snapshot of " + snapshotTitle(h)
	}
	sort.Slice(threads, func(i, j int) bool { return threads[i].Id < threads[j].Id })
	return threads, nil
}

func (ss *session) onThreads(req *dap.ThreadsRequest) {
	threads := []dap.Thread{}
	if ss.rec != nil {
		threads = ss.recordedThreads()
	}
	if ss.client != nil {
		ctx, cancel := context.WithTimeout(ss.ctx, 5*time.Second)
		defer cancel()
		ts, err := ss.processes(ctx)
		if err != nil {
			ss.srv.opts.Log.Warn("listing processes", "err", err)
		}
		if ts != nil {
			threads = ts
		}
	}
	ss.send(&dap.ThreadsResponse{Response: ss.response(&req.Request), Body: dap.ThreadsResponseBody{Threads: threads}})
}

// watchThreads sends thread events as matching processes come and go:
// it looks again whenever the host watch says a host changed, and at
// least every ThreadsEvery.
func (ss *session) watchThreads() {
	defer ss.hosts.Stop()
	changed := ss.hosts.Subscribe()
	known := make(map[int]bool)
	t := time.NewTicker(ss.srv.opts.ThreadsEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(ss.ctx, 5*time.Second)
		ts, err := ss.processes(ctx)
		cancel()
		if err == nil {
			now := make(map[int]bool)
			for _, th := range ts {
				now[th.Id] = true
				if !known[th.Id] {
					ss.send(&dap.ThreadEvent{Event: ss.event("thread"), Body: dap.ThreadEventBody{Reason: "started", ThreadId: th.Id}})
				}
			}
			for id := range known {
				if !now[id] {
					ss.send(&dap.ThreadEvent{Event: ss.event("thread"), Body: dap.ThreadEventBody{Reason: "exited", ThreadId: id}})
				}
			}
			known = now
		}
		select {
		case <-ss.ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}

const replHelp = `RipTrace debug console commands:
  hosts       every agent and the Go processes this session's configuration selects
  hits [N]    the last N hits of this session's breakpoints (default 10)
  snapshot BP open the latest hit of breakpoint BP as if stopped there (so does a
              click on its code lens, or on a hit in the RipTrace hits view);
              Continue dismisses it
  help        this text
RipTrace never pauses a process, so expressions are not evaluated here: put
them in a logpoint ({expr}) or in the configuration's capture.exprs.`

func (ss *session) onEvaluate(req *dap.EvaluateRequest) {
	fail := func(msg string) { ss.sendError(req.Seq, req.Command, ErrEvaluate, msg) }
	if req.Arguments.Context != "repl" && req.Arguments.Context != "" {
		fail("RipTrace never pauses a process, so there is nothing to evaluate in: use a logpoint with {expr}")
		return
	}
	fields := strings.Fields(req.Arguments.Expression)
	var result string
	switch {
	case len(fields) == 0 || fields[0] == "help":
		result = replHelp
	case fields[0] == "hosts" && ss.rec != nil:
		fail("hosts: this session replays a recording and has no fleet; the threads view lists the recorded processes")
		return
	case fields[0] == "hosts":
		if ss.client == nil {
			fail("hosts: attach first")
			return
		}
		ctx, cancel := context.WithTimeout(ss.ctx, 10*time.Second)
		defer cancel()
		hosts, err := ss.hostsView(ctx)
		if err != nil {
			fail(fmt.Sprintf("hosts: %v", err))
			return
		}
		result = ss.renderHosts(hosts)
	case fields[0] == "snapshot":
		if (ss.client == nil && ss.rec == nil) || len(fields) != 2 {
			fail("usage: snapshot BREAKPOINT (after attach), with the breakpoint's number")
			return
		}
		msg, err := ss.snapshotCommand(fields[1])
		if err != nil {
			fail(err.Error())
			return
		}
		result = msg
	case fields[0] == "hits":
		n := 10
		if len(fields) > 1 {
			v, err := strconv.Atoi(fields[1])
			if err != nil || v <= 0 || len(fields) > 2 {
				fail(fmt.Sprintf("usage: hits [N], with N a positive number (got %q)", req.Arguments.Expression))
				return
			}
			n = v
		}
		result = ss.renderRecent(n)
	default:
		fail(fmt.Sprintf("unknown command %q: type help for the commands; RipTrace never pauses a process, so expressions go in logpoints ({expr})", fields[0]))
		return
	}
	ss.send(&dap.EvaluateResponse{Response: ss.response(&req.Request), Body: dap.EvaluateResponseBody{Result: result}})
}

// hostsView lists every host, with the profiles of those the
// configuration selects: the others are only named.
func (ss *session) hostsView(ctx context.Context) ([]fleet.HostEntry, error) {
	selected, err := selectedHosts{ss}.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]fleet.HostEntry, len(selected))
	for _, h := range selected {
		byName[h.Name] = h
	}
	all := ss.hosts.List()
	for i, h := range all {
		if p, ok := byName[h.Name]; ok {
			all[i] = p
		}
	}
	return all, nil
}

func (ss *session) renderHosts(hosts []fleet.HostEntry) string {
	if len(hosts) == 0 {
		return "no agent has reported: start `riptrace agent` on the hosts to trace"
	}
	sel := fleet.Selector{Hosts: ss.cfg.Hosts, Processes: ss.cfg.Processes}
	var sb strings.Builder
	for _, h := range hosts {
		switch {
		case h.Gone:
			fmt.Fprintf(&sb, "%s: gone (last seen %s)%s\n", h.Name, h.LastSeen.Format(time.RFC3339), suffix(h.Error))
			continue
		case !sel.MatchHost(h.Name):
			fmt.Fprintf(&sb, "%s: not selected by \"hosts\"\n", h.Name)
			continue
		case h.Profile == nil:
			fmt.Fprintf(&sb, "%s: came as it was listed; ask again for its processes\n", h.Name)
			continue
		}
		n := 0
		for i := range h.Profile.Processes {
			if sel.MatchProcess(&h.Profile.Processes[i]) {
				n++
			}
		}
		fmt.Fprintf(&sb, "%s: %d of %d Go processes selected\n", h.Name, n, len(h.Profile.Processes))
		for i := range h.Profile.Processes {
			p := &h.Profile.Processes[i]
			if !sel.MatchProcess(p) {
				continue
			}
			att := ""
			if p.Attached {
				att = ", attached"
			}
			fmt.Fprintf(&sb, "  %s  %s%s\n", threadName(h.Name, p), p.Module, att)
		}
	}
	return strings.TrimSuffix(sb.String(), "\n")
}

func (ss *session) byTracepointID(id string) *breakpoint {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byTracepoint[id]
}

func (ss *session) renderRecent(n int) string {
	ss.mu.Lock()
	hits := slices.Clone(newest(ss.recent, min(n, recentHits)))
	ss.mu.Unlock()
	if len(hits) == 0 {
		return "no hits yet"
	}
	var sb strings.Builder
	for _, h := range hits {
		line := compactHit(h)
		if h.Message != "" {
			line += " | " + h.Message
		}
		bp := 0
		if b := ss.byTracepointID(h.Tracepoint); b != nil {
			bp = b.id
		}
		fmt.Fprintf(&sb, "#%s %s bp %d %s:%d %s\n", h.Number(), h.ServerTime.Format("15:04:05.000000"), bp, filepath.Base(h.File), h.Line, line)
	}
	return strings.TrimSuffix(sb.String(), "\n")
}

// onTerminate removes the session's tracepoints and says the session is
// over; no process is stopped.
func (ss *session) onTerminate(req *dap.TerminateRequest) {
	ss.release()
	ss.terminated = true
	ss.send(&dap.TerminateResponse{Response: ss.response(&req.Request)})
	ss.send(&dap.TerminatedEvent{Event: ss.event("terminated")})
}

func (ss *session) onDisconnect(req *dap.DisconnectRequest) {
	ss.shutdown()
	ss.sendLast(&dap.DisconnectResponse{Response: ss.response(&req.Request)})
}

// release removes the session's tracepoints unless they persist.
func (ss *session) release() {
	ss.declMu.Lock()
	defer ss.declMu.Unlock()
	ss.mu.Lock()
	var all []*breakpoint
	for _, bs := range ss.bps {
		all = append(all, bs...)
	}
	all = append(all, ss.fbps...)
	ss.bps, ss.fbps = make(map[string][]*breakpoint), nil
	ss.byTracepoint = make(map[string]*breakpoint)
	ss.mu.Unlock()
	for _, b := range all {
		if b.cancel != nil {
			b.cancel()
		}
	}
	if ss.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ss.lease.Close(ctx); err != nil {
			ss.srv.opts.Log.Warn("removing the session's tracepoints", "err", err)
		}
	}
}

// shutdown ends everything but the writer: tracepoints (unless persist),
// watchers, the hit pump and the connection to the fleet. It is idempotent.
func (ss *session) shutdown() {
	if ss.client == nil {
		ss.cancelCtx()
		ss.background.Wait() // a replay's ticker
		return
	}
	if !ss.terminated {
		ss.release()
		ss.terminated = true
	}
	ss.cancelCtx()
	ss.background.Wait()
	ss.client.Close()
	ss.client = nil
}
