package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riptrace/riptrace/fleet"
)

// Config configures an Agent.
type Config struct {
	// Host names this agent in subjects and status; it is made a subject
	// token with fleet.Token.
	Host string
	// Processes limits the processes the agent manages to those whose
	// module path, main package or executable name matches one of these
	// globs. Empty manages every Go process. With UIDs it is the attach
	// allow-list: the agent offers, traces and attaches to nothing else.
	Processes []string
	// UIDs, if set, limits the managed processes further to those whose
	// real, effective and saved uids (/proc/PID/status) are all listed.
	UIDs []int
	// RuleSources says where the Processes, UIDs and Deny rules were
	// written, so that refusals name them: keys "processes", "uids" and
	// "deny", values a flag ("--processes") or a file and line
	// ("/etc/riptrace/agent.yaml:12"). A missing key names the flag.
	RuleSources map[string]string
	// ScanEvery is how often /proc is scanned for new and exited
	// processes and expired tracepoints are dropped (default 1s).
	ScanEvery time.Duration
	// HeartbeatEvery is how often the agent refreshes its heartbeat and
	// the hit counts in its status entries (default 5s).
	HeartbeatEvery time.Duration
	// Version is reported in the host profile.
	Version string
	// BackendName is reported in the host profile: "delve", or a
	// comma-separated list ("ebpf,delve").
	BackendName string
	// Deny lists globs of source files (as the program names them, for
	// example */internal/crypto/*) and functions (main.(*Vault).Open,
	// */secrets.*) that may never be traced on this host.
	Deny []string
	// Redact removes secrets from hits before they leave the host; nil
	// means DefaultRedactor, &Redactor{} redacts nothing.
	Redact *Redactor
	// StopBudget is the fraction of each second a target may spend stopped
	// by its tracepoints (0 or less: no budget; 0.1 is a sound value for
	// production). Past it, hits are dropped before capture and
	// the status says so; a tracepoint whose traps alone cost more is
	// removed with the reason. Backends that never stop the target ignore it.
	StopBudget float64
	// BufferHits bounds the hits kept while NATS cannot take them (a
	// server restart, a network cut); they are delivered in order once it
	// can. Past the bound, hits are dropped and the exact number is
	// reported in the next hit of the tracepoint, in its status and in the
	// metrics. Default DefaultBufferHits.
	BufferHits int
	// BufferBytes bounds the same buffer by the hits' encoded size.
	// Default DefaultBufferBytes.
	BufferBytes int
	// TimelineLag is the agent's promise in its watermarks: every hit
	// reaches the stream within it of its capture (default
	// DefaultTimelineLag). The timeline waits that long for the agent's
	// hits; one that takes longer comes marked late. The agent raises it
	// for a while when its hits come close to it.
	TimelineLag time.Duration
	// ClockSkew shifts the agent's clock, for tests of the timeline only:
	// hits, watermarks and clock exchanges read the time plus ClockSkew.
	ClockSkew time.Duration
	// Metrics, if set, receives the agent's Prometheus metrics.
	Metrics prometheus.Registerer
	// Log receives the agent's log; nil logs to stderr at info level.
	Log *slog.Logger
}

// Agent serves one host. Its goroutines: the NATS handlers (one per
// subscription, run by nats.go), the key-value watcher, the scan/heartbeat
// ticker, the reconciler (which also writes the hit counts the ticker asks
// for), one hit pump per attached process, and the publisher that the
// pumps hand hits to.
type Agent struct {
	cfg     Config
	c       *fleet.Client
	pub     *publisher
	tk      *timekeeper
	backend Backend
	disc    *discoverer
	sources *sourceIndex
	info    fleet.HostInfo
	log     *slog.Logger
	kick    chan struct{}
	// counts asks the reconciler to write the hit counts: between its
	// passes, never in the ticker's way (see Run).
	counts  chan struct{}
	metrics *metrics
	pumps   sync.WaitGroup

	// recMu serializes reconcile passes, which call into backends without
	// holding mu, and guards written.
	recMu   sync.Mutex
	written map[string]fleet.Status // status entries as last written

	// mu guards the fields below.
	mu       sync.Mutex
	procs    map[int]*fleet.Process  // managed Go processes of the last scan
	outside  map[int]*fleet.Process  // Go processes the allow-list refuses, of the last scan
	declared map[string]*fleet.Spec  // the tracepoint bucket
	direct   map[string]*fleet.Spec  // createTracepoint requests
	attached map[int]*attachment     // pid → attached target
	placed   map[placeKey]*placement // what each process has, or why not
	// waiting says what a process waits for, for the tracepoints whose
	// placement has not begun: attaching can take seconds, and clients
	// must know that an answer is coming.
	waiting  map[placeKey]string
	hostWide map[string]hostNote     // tracepoint → its status on the host as a whole (pid 0)
	invalid  map[string]*fleet.Error // bucket key → why its spec was refused
	ended    map[int]string          // pid → why its target closed, until its statuses say so
	stopping bool                    // shutdown withdraws every entry
	// quarantine holds the specs this host no longer tries, deaths the
	// backend deaths counted against specs (see quarantine.go).
	quarantine map[string]quarantined
	deaths     map[string]deaths
}

type placeKey struct {
	pid int
	id  string
}

type attachment struct {
	proc        *fleet.Process
	target      Target
	pinnedUntil time.Time // an explicit attach keeps the target for a while

	// The hits on their way from the backend to the stream, for the
	// watermarks to stay behind them (see heldSince): since is when the
	// target was attached, taking the capture time of the hit the pump
	// is handling (0: none), taken that of the last one it handled.
	since         int64
	taking, taken atomic.Int64
	// transit counts the hits from the backend's send to the stream,
	// where the backend can count them (see Transit).
	transit *Transit
}

// inTransit returns the capture time (on the agent's clock, before its
// skew) of the oldest hit the backend has delivered and the agent has not
// yet queued for the stream, 0 if none. Those waiting in the target's
// channel came after the last one taken (the channel is in the order of
// delivery, which is the order of capture give or take transitSlack), or
// after the attach.
func (att *attachment) inTransit() int64 {
	if t := att.taking.Load(); t != 0 {
		return t
	}
	if len(att.target.Hits()) == 0 {
		return 0
	}
	if t := att.taken.Load(); t != 0 {
		return t - int64(transitSlack)
	}
	return att.since
}

// transitSlack bounds how much earlier than the hit delivered before it a
// hit can have been captured.
const transitSlack = 10 * time.Millisecond

// New returns an agent serving cfg.Host through c with backend.
func New(cfg Config, c *fleet.Client, backend Backend) *Agent {
	if cfg.ScanEvery <= 0 {
		cfg.ScanEvery = time.Second
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 5 * time.Second
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if cfg.Redact == nil {
		cfg.Redact = DefaultRedactor()
	}
	if cfg.BufferHits <= 0 {
		cfg.BufferHits = DefaultBufferHits
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = DefaultBufferBytes
	}
	if cfg.TimelineLag <= 0 {
		cfg.TimelineLag = DefaultTimelineLag
	}
	cfg.Host = fleet.Token(cfg.Host)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	log = log.With("host", cfg.Host)
	if b, ok := backend.(interface{ SetStopBudget(float64) }); ok {
		b.SetStopBudget(cfg.StopBudget)
	}
	a := &Agent{
		cfg:     cfg,
		c:       c,
		backend: backend,
		disc:    newDiscoverer(),
		sources: newSourceIndex(),
		log:     log,
		kick:    make(chan struct{}, 1),
		counts:  make(chan struct{}, 1),
		metrics: newMetrics(cfg.Metrics),
		tk:      &timekeeper{skew: cfg.ClockSkew, lag: cfg.TimelineLag, wake: make(chan struct{}, 1)},
		info: fleet.HostInfo{
			Name:         cfg.Host,
			OS:           runtime.GOOS,
			Arch:         runtime.GOARCH,
			Kernel:       kernelRelease(),
			CPUs:         runtime.NumCPU(),
			AgentVersion: cfg.Version,
			Backends:     strings.Split(cfg.BackendName, ","),
			Started:      time.Now().UTC(),
		},
		procs:    make(map[int]*fleet.Process),
		outside:  make(map[int]*fleet.Process),
		declared: make(map[string]*fleet.Spec),
		direct:   make(map[string]*fleet.Spec),
		attached: make(map[int]*attachment),
		placed:   make(map[placeKey]*placement),
		waiting:  make(map[placeKey]string),
		written:  make(map[string]fleet.Status),
		hostWide: make(map[string]hostNote),
		invalid:  make(map[string]*fleet.Error),
		ended:    make(map[int]string),

		quarantine: make(map[string]quarantined),
		deaths:     make(map[string]deaths),
	}
	registerStopped(cfg.Metrics, a)
	return a
}

// Host returns the agent's host token.
func (a *Agent) Host() string { return a.cfg.Host }

// Run serves until ctx ends, then removes every tracepoint, detaches from
// every process (which keep running), withdraws its status and heartbeat,
// and returns.
func (a *Agent) Run(ctx context.Context) error {
	stopped := false
	defer func() {
		// Said last, once the watches, the request handlers and the
		// publisher are done too.
		if stopped {
			a.log.Info("agent stopped; every process detached")
		}
	}()
	pub, err := newPublisher(a.c, a.cfg.Host, fmt.Sprintf("%s-%d-", a.cfg.Host, time.Now().UnixNano()),
		a.cfg.BufferHits, a.cfg.BufferBytes, a.log, a.metrics)
	if err != nil {
		return err
	}
	pub.refused = a.lose
	a.pub = pub
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer func() {
		stopPub()
		<-pub.done
	}()
	go pub.run(pubCtx)

	stopServing, err := a.c.ServeHost(a.cfg.Host, fleet.HostHandlers{
		Profile:          a.handleProfile,
		Attach:           a.handleAttach,
		CreateTracepoint: a.handleCreate,
		ClearTracepoint:  a.handleClear,
	}, a.log)
	if err != nil {
		return err
	}
	defer stopServing()
	// Only once the server lets this agent serve its host: an agent whose
	// user may not is told why by the refusal of the host's requests, not
	// of its first watermark.
	go a.tk.runClock(pubCtx, a.c, a.log)
	markCtx, stopMarks := context.WithCancel(ctx)
	defer stopMarks()
	go a.runWatermarks(markCtx)

	specs, err := a.c.WatchSpecs(ctx, a.log)
	if err != nil {
		return err
	}
	defer specs.Stop()

	a.scan()
	beat := a.heartbeat(ctx)
	a.log.Info("agent ready", "nats", a.c.ConnectedURL(), "processes", len(a.procs))

	reconcileDone := make(chan struct{})
	go func() {
		defer close(reconcileDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.kick:
				a.reconcile(ctx)
			case <-a.counts:
				a.flushHitCounts(ctx)
			}
		}
	}()

	scanTick := time.NewTicker(a.cfg.ScanEvery)
	defer scanTick.Stop()
	beatTick := time.NewTicker(a.cfg.HeartbeatEvery)
	defer beatTick.Stop()
	events := specs.Events()
	for {
		select {
		case <-ctx.Done():
			<-reconcileDone
			a.shutdown()
			stopped = true
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil // shutting down: the watch ends with ctx
				continue
			}
			if ev.Resync {
				a.resync(ev.Entries)
				// After a reconnect, too: the server may be a restarted
				// one that lost the heartbeat.
				beat = a.heartbeat(ctx)
			} else {
				a.applyEntry(ev.Entries[0])
			}
			a.poke()
		case <-scanTick.C:
			a.scan()
			if a.digest() != beat {
				// A process came, went, or was attached or detached since
				// the last beat: clients watching the hosts learn of it
				// now, not at the next beat.
				beat = a.heartbeat(ctx)
			}
			a.poke()
		case <-beatTick.C:
			beat = a.heartbeat(ctx)
			// Writing the counts waits for a reconcile pass, which can
			// attach for tens of seconds on a loaded machine: the ticker
			// must not wait with it, or the agent misses heartbeats and
			// its readers take it for gone while it works.
			select {
			case a.counts <- struct{}{}:
			default:
			}
		}
	}
}

// poke asks the reconciler for a pass; pokes coalesce.
func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) applyEntry(e fleet.SpecEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applyEntryLocked(e)
}

// resync makes the declared tracepoints the entries a new watcher found:
// what was removed while the agent was cut off goes, what was added comes.
func (a *Agent) resync(entries []fleet.SpecEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.declared = make(map[string]*fleet.Spec)
	a.invalid = make(map[string]*fleet.Error)
	for _, e := range entries {
		a.applyEntryLocked(e)
	}
}

// Lock should be held.
func (a *Agent) applyEntryLocked(e fleet.SpecEntry) {
	key := e.Key
	delete(a.declared, key)
	delete(a.invalid, key)
	if e.Deleted {
		return
	}
	var s fleet.Spec
	var err error
	if n := len(e.Value); n > fleet.MaxSpecBytes {
		// Refused before it is decoded: no client writes one this large.
		err = fleet.Errorf(fleet.CodeTooLarge, "tracepoint spec under key %s is %d bytes, more than the %d an agent reads. Declare it with a client (riptrace trace, the debug adapter), which keeps specs within bounds", key, n, fleet.MaxSpecBytes)
	} else {
		err = fleet.Decode(e.Value, "tracepoint spec", &s)
	}
	if err == nil {
		err = s.Validate()
	}
	if err == nil {
		err = a.cfg.Redact.Check(&s)
	}
	if err == nil && s.ID != key {
		err = fleet.Errorf(fleet.CodeBadRequest, "tracepoint spec under key %s has id %s: the key must be the id", key, s.ID)
	}
	if err != nil {
		// Said where the declaring client watches: the status of that id.
		a.log.Warn("refusing a tracepoint spec from the bucket", "key", key, "err", err)
		a.invalid[key] = fleet.AsError(err)
		return
	}
	a.declared[s.ID] = &s
}

// scan refreshes the managed processes.
func (a *Agent) scan() {
	// The allow-list's globs never change: a process outside them is
	// never traced, and needs no link stamps.
	all := a.disc.scan(func(p *fleet.Process) bool { return fleet.MatchProcess(a.cfg.Processes, p) })
	refused := make(map[int]bool) // by the allow-list, read outside the lock
	for pid, p := range all {
		refused[pid] = !a.admits(p)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.procs
	a.procs = make(map[int]*fleet.Process, len(all))
	a.outside = make(map[int]*fleet.Process)
	for pid, p := range all {
		if refused[pid] {
			a.outside[pid] = p
			continue
		}
		a.procs[pid] = p
		if old[pid] != p {
			a.sources.warm(pid)
			if pl, ok := a.backend.(Preloader); ok {
				pl.Preload(pid)
			}
		}
	}
}

// digest is the heartbeat's digest of the managed processes, and of
// which are attached.
func (a *Agent) digest() string {
	a.mu.Lock()
	procs := make([]*fleet.Process, 0, len(a.procs))
	for pid, p := range a.procs {
		c := *p
		c.Attached = a.attached[pid] != nil
		procs = append(procs, &c)
	}
	a.mu.Unlock()
	return fleet.ProcessDigest(procs)
}

// heartbeat writes the agent's heartbeat and returns its digest.
func (a *Agent) heartbeat(ctx context.Context) string {
	hb := fleet.Heartbeat{Host: a.cfg.Host, Updated: time.Now().UTC(), Every: fleet.Duration(a.cfg.HeartbeatEvery), Digest: a.digest()}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.c.PutHeartbeat(ctx, &hb); err != nil {
		a.log.Warn("writing heartbeat", "err", err)
		if err := a.c.Probe(); err != nil {
			a.log.Warn("checking the connection to NATS", "err", err)
		}
	}
	return hb.Digest
}

// reconcile makes the attached processes carry exactly the tracepoints that
// are declared or requested, not expired, and select them.
func (a *Agent) reconcile(ctx context.Context) {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	now := time.Now()
	// A pass that started finishes: half-installed tracepoints and
	// half-detached processes would be worse than a late shutdown.
	ctx = context.WithoutCancel(ctx)

	// What should be where.
	a.mu.Lock()
	want := make(map[placeKey]*fleet.Spec)
	hostWide := make(map[string]hostNote)
	a.forgetGoneLocked()
	for _, specs := range []map[string]*fleet.Spec{a.declared, a.direct} {
		for id, s := range specs {
			if !s.Selector.MatchHost(a.cfg.Host) {
				continue
			}
			if s.Expired(now) {
				// Said, not dropped in silence: its owner stopped renewing
				// it, or gave it that end.
				hostWide[id] = hostNote{fleet.StateDone, fmt.Sprintf("tracepoint %s expired at %s (limits.expiresAt): its owner gave it that end, or stopped renewing it. Declare it again to trace the line, or remove it", id, s.Limits.ExpiresAt.UTC().Format(time.RFC3339))}
				continue
			}
			if q := a.quarantinedLocked(s); q != nil {
				hostWide[id] = hostNote{fleet.StateError, q.Message}
				continue
			}
			matched := false
			for pid, p := range a.procs {
				if s.Selector.MatchProcess(p) {
					want[placeKey{pid, id}] = s
					matched = true
				}
			}
			// A process the allow-list refuses is never attached. One that
			// a selector names on purpose, and that the process globs admit
			// but the uids refuse, gets a status saying which rule refused
			// it; one outside the globs is left alone, silently: agents
			// may split a machine's processes between them by globs.
			// A pid named in the selector but outside the globs is not
			// this agent's to refuse; its pending status says why it waits.
			var elsewhere []int
			if len(s.Selector.Pids) > 0 || len(s.Selector.Processes) > 0 {
				for pid, p := range a.outside {
					if !s.Selector.MatchProcess(p) {
						continue
					}
					if fleet.MatchProcess(a.cfg.Processes, p) {
						want[placeKey{pid, id}] = s
						matched = true
					} else if slices.Contains(s.Selector.Pids, pid) {
						elsewhere = append(elsewhere, pid)
					}
				}
			}
			switch {
			case matched:
			case len(elsewhere) > 0:
				slices.Sort(elsewhere)
				hostWide[id] = hostNote{fleet.StatePending, fmt.Sprintf("pid %v on host %s is outside this agent's attach allow-list (%s). An agent of this host that manages it traces it; if there is none, add it to the list", elsewhere, a.cfg.Host, a.rule("processes", fmt.Sprintf("%q", a.cfg.Processes)))}
			default:
				hostWide[id] = hostNote{fleet.StatePending, fmt.Sprintf("no Go process on host %s matches %s yet; it will be installed when one starts", a.cfg.Host, describeSelector(s.Selector))}
			}
		}
	}
	a.hostWide = hostWide
	var remove []placeKey
	for k, p := range a.placed {
		s, ok := want[k]
		if ok && fingerprint(s) != p.fingerprint {
			proc := a.procs[k.pid]
			if proc == nil {
				proc = a.outside[k.pid]
			}
			// A spec declared again with its line mapped into one more
			// revision is the same tracepoint in the processes of the
			// others: they keep it, and their hits, as it is.
			ok = proc != nil && placeFingerprint(s, proc) == placeFingerprint(p.spec, proc)
		}
		if !ok {
			remove = append(remove, k)
		}
	}
	var add []placeKey
	for k := range want {
		if _, ok := a.placed[k]; !ok {
			add = append(add, k)
		}
	}
	a.mu.Unlock()

	for _, k := range remove {
		a.unplace(ctx, k)
	}
	a.placeAll(ctx, add, want)
	for _, k := range a.doneToClear() {
		a.clearDone(ctx, k)
	}
	a.detachIdle(ctx, now)
	a.writeStatuses(ctx, false)
}

// placeAll installs the added tracepoints, one goroutine per process so that
// replicas attach side by side, and reports each process's status as soon as
// its tracepoints are in. A process that is refused at once (it lacks the
// file, say) says so; every other one says first that it is pending, and
// what it waits for, so that no client takes its silence for a refusal
// while it is being attached. recMu should be held.
func (a *Agent) placeAll(ctx context.Context, add []placeKey, want map[placeKey]*fleet.Spec) {
	byPid := make(map[int][]placeKey)
	for _, k := range add {
		_, warning, err := a.resolve(k, want[k], a.sources.indexed)
		switch {
		case errors.Is(err, errNotIndexed):
			a.wait(k, fmt.Sprintf("reading the debug info of pid %d…", k.pid))
		case err != nil:
			a.log.Info("tracepoint not installed", "tracepoint", k.id, "pid", k.pid, "err", err)
			a.record(k, failed(want[k], warning, err))
			continue
		case a.isAttached(k.pid):
			a.wait(k, fmt.Sprintf("installing in pid %d…", k.pid))
		default:
			a.wait(k, fmt.Sprintf("attaching to pid %d…", k.pid))
		}
		byPid[k.pid] = append(byPid[k.pid], k)
	}
	defer func() {
		a.mu.Lock()
		clear(a.waiting)
		a.mu.Unlock()
	}()
	done := make(chan struct{})
	sem := make(chan struct{}, max(2, runtime.NumCPU()))
	for _, keys := range byPid {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem; done <- struct{}{} }()
			sort.Slice(keys, func(i, j int) bool { return keys[i].id < keys[j].id })
			for _, k := range keys {
				a.place(ctx, k, want[k])
			}
		}()
	}
	if len(add) > 0 {
		// The refusals and the pending ones, while the attaches run.
		a.writeStatuses(ctx, false)
	}
	for range byPid {
		<-done
		a.writeStatuses(ctx, false)
	}
}

// wait records what process k.pid waits for before k's placement begins.
func (a *Agent) wait(k placeKey, what string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waiting[k] = what
}

// isAttached reports whether the agent holds a target of pid.
func (a *Agent) isAttached(pid int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.attached[pid] != nil
}

// denied refuses a file or function the agent's Deny globs name.
func (a *Agent) denied(name string) error {
	for _, g := range a.cfg.Deny {
		if fleet.Glob(g, name) {
			return fleet.Errorf(fleet.CodeNotManaged, "tracing %s is not allowed on host %s: it matches the agent's %s", name, a.cfg.Host, a.rule("deny", fmt.Sprintf("%q", g)))
		}
	}
	return nil
}

func describeSelector(s fleet.Selector) string {
	switch {
	case len(s.Pids) > 0 && len(s.Processes) > 0:
		return fmt.Sprintf("pids %v and processes %v", s.Pids, s.Processes)
	case len(s.Pids) > 0:
		return fmt.Sprintf("pids %v", s.Pids)
	case len(s.Processes) > 0:
		return fmt.Sprintf("processes %v", s.Processes)
	}
	return "any process"
}

// fingerprint identifies what a spec installs. Expiry and creation time are
// left out: an owner renewing its lease must not reinstall the tracepoint.
func fingerprint(s *fleet.Spec) string {
	c := *s
	c.Limits.ExpiresAt, c.Created = time.Time{}, time.Time{}
	return string(fleet.Encode(&c))
}

// placeFingerprint identifies what a spec installs in proc: its location
// is the one it names for proc's revision, with the warning or refusal
// that comes with it.
func placeFingerprint(s *fleet.Spec, proc *fleet.Process) string {
	c := *s
	c.Limits.ExpiresAt, c.Created = time.Time{}, time.Time{}
	loc, warning, err := s.Location.ForProcess(proc)
	c.Location = loc
	return fmt.Sprintf("%s\x00%s\x00%v", fleet.Encode(&c), warning, err)
}

// place installs spec in process k.pid, attaching first if needed. A
// process whose executable lacks the file is never attached: attaching stops
// it while Delve reads its debug info.
func (a *Agent) place(ctx context.Context, k placeKey, spec *fleet.Spec) {
	var p *placement
	var att *attachment
	defer func() {
		if r := recover(); r != nil {
			if p == nil {
				p = newPlacement(spec, "")
			}
			a.placePanicked(k, p, att, r)
		}
	}()
	local, warning, att, err := a.prepare(ctx, k, spec)
	if err != nil {
		a.log.Info("tracepoint not installed", "tracepoint", k.id, "pid", k.pid, "err", err)
		a.record(k, failed(spec, warning, err))
		return
	}
	// The first hits, or the removal of a tracepoint whose condition
	// fails at once, can reach pump before Set returns here: they must
	// find the placement.
	installed, lp := splitLog(local)
	p = newPlacement(spec, warning)
	p.log = lp
	a.record(k, p)
	pl, err := a.install(ctx, k, att, installed)
	if err != nil {
		a.log.Info("tracepoint not installed", "tracepoint", k.id, "pid", k.pid, "err", err)
		p.fail(err)
		a.record(k, p)
		return
	}
	pl.BackendWhy = lp.explain(pl.BackendWhy)
	p.commit(pl)
	a.record(k, p)
	if v := p.view(); v.err != nil {
		a.log.Info("tracepoint installed, and removed at once", "tracepoint", k.id, "pid", k.pid, "function", pl.Function, "err", v.err)
	} else {
		a.log.Info("tracepoint installed", "tracepoint", k.id, "pid", k.pid, "function", pl.Function, "pcs", len(pl.PCs))
	}
	// The hits that came while Set ran leave first, in order: pump holds
	// newer ones behind them until none is left. (Those taken before a
	// removal that came meanwhile are hits like any other.)
	ref := att.proc.Ref()
	for {
		c, ok := p.next()
		if !ok {
			break
		}
		a.publish(k, p, c, ref, false)
		p.released()
	}
}

// record makes p what process k.pid has of tracepoint k.id: it waits no
// more.
func (a *Agent) record(k placeKey, p *placement) {
	a.metrics.dropped.WithLabelValues(k.id) // its series reads 0 until a drop
	a.mu.Lock()
	defer a.mu.Unlock()
	a.placed[k] = p
	delete(a.waiting, k)
}

// prepare finds what a placement of spec in process k.pid needs: the
// location in the revision the process runs, and the attached target. A
// line refused in that revision, a file the program lacks or a denied file
// is never traced, and the process is not even attached: attaching stops it
// while Delve reads its debug info.
func (a *Agent) prepare(ctx context.Context, k placeKey, spec *fleet.Spec) (local fleet.Spec, warning string, att *attachment, err error) {
	if local, warning, err = a.resolve(k, spec, a.sources.files); err != nil {
		return local, warning, nil, err
	}
	att, err = a.attach(ctx, k.pid)
	return local, warning, att, err
}

// resolve finds the location of spec in the revision process k.pid runs,
// and the file as its program names it, with files listing the program's
// source files; it refuses a line refused in that revision, a file the
// program lacks and a denied file.
func (a *Agent) resolve(k placeKey, spec *fleet.Spec, files func(pid int) ([]string, error)) (local fleet.Spec, warning string, err error) {
	local = *spec
	a.mu.Lock()
	proc := a.procs[k.pid]
	outside := a.outside[k.pid]
	a.mu.Unlock()
	if proc == nil && outside != nil {
		// Asked again: a process may change its uids.
		if err := a.admit(outside); err != nil {
			return local, "", err
		}
		proc = outside
	}
	if proc != nil {
		var ferr *fleet.Error
		if local.Location, warning, ferr = spec.Location.ForProcess(proc); ferr != nil {
			return local, warning, ferr
		}
	}
	names, err := files(k.pid)
	if err != nil {
		return local, warning, err
	}
	file, err := ResolveFile(names, local.Location)
	if err != nil {
		return local, warning, err
	}
	if err := a.denied(file); err != nil {
		return local, warning, err
	}
	// The backends get the file as the program names it: two specs that
	// name one line by different paths (loop/main.go, main.go) must look
	// alike to them, or a uprobe and a ptrace breakpoint could share an
	// instruction, and the process would die of SIGTRAP.
	local.Location.Module, local.Location.Path = "", versionElem.ReplaceAllString(file, "")
	return local, warning, nil
}

// install sets tp in att's process. What the backend may have installed
// when Set fails by timing out, or in a denied function, is cleared: it
// would stop the process for hits that no one takes.
func (a *Agent) install(ctx context.Context, k placeKey, att *attachment, tp Tracepoint) (Placement, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pl, err := att.target.Set(ctx, tp)
	cancel()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// The backend may still install it after we stopped waiting.
		a.clear(att, k, "clearing a tracepoint whose Set timed out")
		return pl, err
	}
	if err != nil {
		return pl, err
	}
	if err := a.denied(pl.Function); err != nil {
		a.clear(att, k, "clearing a tracepoint in a denied function")
		return pl, err
	}
	return pl, nil
}

// clear removes tracepoint k.id from att's process, logging a failure as
// doing.
func (a *Agent) clear(att *attachment, k placeKey, doing string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := att.target.Clear(ctx, k.id); err != nil {
		a.log.Warn(doing, "tracepoint", k.id, "pid", k.pid, "err", err)
	}
}

// unplace removes tracepoint k.id from process k.pid.
func (a *Agent) unplace(ctx context.Context, k placeKey) {
	a.mu.Lock()
	p := a.placed[k]
	att := a.attached[k.pid]
	delete(a.placed, k)
	a.mu.Unlock()
	if att != nil && p != nil && p.view().active() {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := att.target.Clear(ctx, k.id); err != nil {
			a.log.Warn("clearing tracepoint", "tracepoint", k.id, "pid", k.pid, "err", err)
		}
	}
}

func (a *Agent) doneToClear() []placeKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ks []placeKey
	for k, p := range a.placed {
		if v := p.view(); v.done != "" && v.err == nil && v.pl.PCs != nil {
			ks = append(ks, k)
		}
	}
	return ks
}

// clearDone removes a tracepoint that reached its maxHits but stays recorded,
// so it is not installed again.
func (a *Agent) clearDone(ctx context.Context, k placeKey) {
	a.mu.Lock()
	att := a.attached[k.pid]
	p := a.placed[k]
	a.mu.Unlock()
	if p != nil {
		p.cleared()
	}
	if att != nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := att.target.Clear(ctx, k.id); err != nil {
			a.log.Warn("clearing finished tracepoint", "tracepoint", k.id, "pid", k.pid, "err", err)
		}
	}
}

// attach returns the attachment for pid, attaching if needed.
func (a *Agent) attach(ctx context.Context, pid int) (*attachment, error) {
	a.mu.Lock()
	att := a.attached[pid]
	proc := a.procs[pid]
	a.mu.Unlock()
	if att != nil {
		return att, nil
	}
	if proc == nil {
		p, err := a.disc.lookup(pid)
		if err != nil {
			return nil, err
		}
		proc = p
	}
	// Checked at every attach, not only at the last scan: the agent never
	// attaches outside its allow-list.
	if err := a.admit(proc); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	target, err := a.backend.Attach(ctx, pid)
	if err != nil {
		a.metrics.attachErrors.Inc()
		return nil, err
	}
	a.metrics.attached.Inc()
	a.log.Info("attached", "pid", pid, "exe", proc.Exe, "took", time.Since(start).Round(time.Millisecond))
	att = &attachment{proc: proc, target: target, since: time.Now().UnixNano()}
	if f, ok := target.(Follower); ok {
		att.transit = &Transit{}
		f.Follow(att.transit)
	}
	a.mu.Lock()
	a.attached[pid] = att
	a.mu.Unlock()
	a.pumps.Add(1)
	go a.pump(pid, att)
	return att, nil
}

// detachIdle detaches from processes that carry no tracepoint.
func (a *Agent) detachIdle(ctx context.Context, now time.Time) {
	a.mu.Lock()
	busy := make(map[int]bool)
	for k, p := range a.placed {
		if p.view().active() {
			busy[k.pid] = true
		}
	}
	var idle []int
	for pid, att := range a.attached {
		if !busy[pid] && now.After(att.pinnedUntil) {
			idle = append(idle, pid)
		}
	}
	a.mu.Unlock()
	for _, pid := range idle {
		a.detach(ctx, pid)
	}
}

func (a *Agent) detach(ctx context.Context, pid int) {
	a.mu.Lock()
	att := a.attached[pid]
	delete(a.attached, pid)
	a.mu.Unlock()
	if att == nil {
		return
	}
	a.metrics.attached.Dec()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := att.target.Detach(ctx)
	var exited ErrProcessExited
	switch {
	case errors.As(err, &exited):
		a.log.Info("process exited while attached", "pid", pid, "status", exited.Status)
	case err != nil:
		a.log.Warn("detaching", "pid", pid, "err", err)
	default:
		a.log.Info("detached", "pid", pid)
	}
}

// pump publishes the hits of one attached process until its target closes
// the channel (detached, or the process exited).
func (a *Agent) pump(pid int, att *attachment) {
	defer a.pumps.Done()
	ref := att.proc.Ref()
	hits := att.target.Hits()
	for h := range hits {
		// take settles h in place (its drops, its time on the
		// server's clock): what it was captured at is kept apart.
		captured := h.Time
		att.taking.Store(captured)
		a.take(pid, ref, &h)
		att.taken.Store(captured)
		att.taking.Store(0)
		att.transit.Taken(captured)
		if len(hits) == 0 {
			// The hits taken so far leave together (see
			// fleet.Outbox.OfferHit).
			a.pub.wake()
		}
	}
	// The channel closed: the target is detached, its process exited, or
	// the backend serving it died.
	a.closed(pid, att)
}

// take handles hit h of process pid, delivered by its backend. A hit it
// publishes leaves once the caller wakes the publisher.
func (a *Agent) take(pid int, ref fleet.ProcessRef, h *Hit) {
	k := placeKey{pid, h.Tracepoint}
	a.mu.Lock()
	p := a.placed[k]
	a.mu.Unlock()
	if p == nil {
		return
	}
	switch act, c, dropped := p.accept(h); act {
	case hitFaulted:
		a.metrics.dropped.WithLabelValues(h.Tracepoint).Add(float64(dropped))
		a.log.Warn("tracepoint failed", "tracepoint", h.Tracepoint, "pid", pid, "err", h.Fault)
		a.poke()
	case hitHeld:
		a.metrics.dropped.WithLabelValues(h.Tracepoint).Add(float64(dropped))
		if h.DropsOnly {
			a.countUncounted(h.Tracepoint, h.Uncounted)
		}
	case hitPublished:
		a.publish(k, p, c, ref, true)
	}
}

// closed forgets pid's target att, whose hit channel closed.
func (a *Agent) closed(pid int, att *attachment) {
	a.mu.Lock()
	if a.attached[pid] == att {
		delete(a.attached, pid)
		a.metrics.attached.Dec()
		suspects := a.deathSuspectsLocked(pid)
		for k := range a.placed {
			if k.pid == pid {
				delete(a.placed, k)
			}
		}
		a.mu.Unlock()
		err := att.target.Detach(context.Background())
		a.mu.Lock()
		a.ended[pid] = endReason(pid, err)
		a.mu.Unlock()
		a.log.Info("process gone", "pid", pid, "reason", err)
		a.backendDied(pid, suspects, err)
		a.poke()
		return
	}
	a.mu.Unlock()
}

// countUncounted adds what a hit of tracepoint id said of drops not
// counted to the metrics.
func (a *Agent) countUncounted(id string, u Uncounted) {
	if u.N > 0 {
		a.metrics.uncounted.WithLabelValues(id).Add(float64(u.N))
	}
	if u.Unknown {
		a.metrics.unestimated.WithLabelValues(id).Inc()
	}
}

// publish sends a hit placement p counted. One that reached the
// tracepoint's maxHits has the reconciler clear it. With more, it leaves
// once the publisher is woken.
func (a *Agent) publish(k placeKey, p *placement, c counted, ref fleet.ProcessRef, more bool) {
	if c.own > 0 {
		// Looked up only then: the lookup of its series cost 1% of the
		// agent's CPU on make bench's hot loop, a hit at a time.
		a.metrics.dropped.WithLabelValues(k.id).Add(float64(c.own))
	}
	a.countUncounted(k.id, c.uncounted)
	if c.reachedMax {
		a.poke()
	}
	h := c.hit
	h.Time += int64(a.tk.skew)
	h.Clock = a.tk.publishing(time.Unix(0, h.Time))
	if h.Clock != nil {
		h.Clock.Bound += h.TimeErr
	}
	a.publishSafely(k, p, h, ref, more)
}

// lose counts a hit of tracepoint k.id in process k.pid that never reached
// the stream, and the dropped count it carried; the next hit that leaves
// reports them.
func (a *Agent) lose(k placeKey, dropped uint64) {
	a.metrics.lost.WithLabelValues(k.id).Inc()
	a.mu.Lock()
	p := a.placed[k]
	a.mu.Unlock()
	if p != nil {
		p.lose(dropped)
	}
}

// shutdown detaches from everything and withdraws the agent's entries.
func (a *Agent) shutdown() {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.mu.Lock()
	pids := make([]int, 0, len(a.attached))
	for pid := range a.attached {
		pids = append(pids, pid)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, pid := range pids {
		wg.Go(func() { a.detach(ctx, pid) })
	}
	wg.Wait()
	a.pumps.Wait()
	// Hits still buffered get a while to leave; the agent does not wait
	// out a long outage to stop, and gives a server already gone only
	// the time a reconnection in progress takes.
	flushWait := 10 * time.Second
	if !a.c.Connected() {
		flushWait = 3 * time.Second
	}
	flushCtx, cancelFlush := context.WithTimeout(ctx, flushWait)
	if n := a.pub.flush(flushCtx); n > 0 {
		a.log.Warn("stopping with hits NATS did not take; they are lost", "hits", n)
	} else {
		// The agent's last word in the stream: nothing more comes from
		// it, so the timeline need not wait for it.
		w := a.tk.watermark(a.cfg.Host, time.Time{}, true)
		w.Final = true
		a.pub.offerMarks(a.pub.markedTracepoints(), fleet.Encode(w))
		a.pub.flush(flushCtx)
	}
	cancelFlush()
	a.mu.Lock()
	a.stopping = true
	a.placed = make(map[placeKey]*placement)
	a.hostWide = make(map[string]hostNote)
	a.invalid = make(map[string]*fleet.Error)
	a.mu.Unlock()
	if !a.c.Connected() {
		// Writes would wait out ctx for a server that is not there; the
		// heartbeat's age tells the clients that this agent is gone.
		a.log.Warn("stopping without NATS: the statuses and heartbeat stay until they are stale")
		return
	}
	a.writeStatuses(ctx, false)
	if err := a.c.WithdrawHeartbeat(ctx, a.cfg.Host); err != nil {
		a.log.Warn("withdrawing heartbeat", "err", err)
	}
}
