package web

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// hub reads the fleet once for every page: the hosts and their processes,
// the declared tracepoints with each one's per-process status, and the hit
// stream through one fleet.Timeline. Event streams subscribe to it.
type hub struct {
	c       *fleet.Client
	opts    *Options
	sources *Sources
	fetches sync.WaitGroup // the background fetches
	// until says when a tracepoint set from a page ends by its user's
	// will (Server.until); it takes the Server's locks, under mu.
	until func(id string) time.Time

	// mu guards everything below.
	mu       sync.Mutex
	hw       *fleet.HostWatch // while watchFleet runs
	hosts    []fleet.HostEntry
	fleetJ   []byte // the last "fleet" event's data
	specs    map[string]fleet.Spec
	status   map[string]map[string]fleet.Status // tracepoint → "host/pid" → status
	watch    map[string]context.CancelFunc      // status watchers, by tracepoint
	tpsJ     []byte                             // the last "tracepoints" event's data
	recent   []fleet.Placed                     // the last maxRecent hits, oldest first
	subs     map[*subscriber]struct{}
	groups   []string // captured names a hit's group is read from
	tpDirty  bool
	fetching map[string]bool // "module@rev" being fetched
}

// maxRecent is how many hits the server keeps for pages that open later.
const maxRecent = 500

func newHub(c *fleet.Client, opts *Options, sources *Sources) *hub {
	return &hub{
		c: c, opts: opts, sources: sources,
		specs:    make(map[string]fleet.Spec),
		status:   make(map[string]map[string]fleet.Status),
		watch:    make(map[string]context.CancelFunc),
		subs:     make(map[*subscriber]struct{}),
		groups:   append([]string(nil), opts.Group...),
		fetching: make(map[string]bool),
	}
}

// run runs the hub's goroutines until ctx ends.
func (h *hub) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { h.watchFleet(ctx) })
	wg.Go(func() { h.pollTracepoints(ctx) })
	wg.Go(func() { h.readTimeline(ctx) })
	wg.Wait()
	h.fetches.Wait()
	h.mu.Lock()
	for _, cancel := range h.watch {
		cancel()
	}
	h.mu.Unlock()
}

// watchFleet follows the fleet's hosts from their heartbeats, tells the
// pages when they changed, and fetches revisions that processes run and
// the clones lack. Only a host whose processes changed is asked for its
// profile; FleetEvery refreshes what the pages show of the others (when
// each was last seen).
func (h *hub) watchFleet(ctx context.Context) {
	hw, err := h.c.WatchHosts(ctx, h.opts.Log)
	if err != nil {
		h.notice(fmt.Sprintf("watching the fleet's hosts: %v", err))
		return
	}
	h.mu.Lock()
	h.hw = hw
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.hw = nil
		h.mu.Unlock()
		hw.Stop()
	}()
	changed := hw.Subscribe()
	t := time.NewTicker(h.opts.FleetEvery)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		hosts, err := hw.Hosts(qctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			h.notice(fmt.Sprintf("listing the fleet's hosts: %v", err))
		} else if err == nil {
			h.setHosts(hosts)
			h.fetchRevisions(ctx, hosts)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}

// hostWatch returns the hub's watch of the fleet's hosts, nil before it
// started or after it stopped.
func (h *hub) hostWatch() *fleet.HostWatch {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hw
}

// FleetHost is a host as the page shows it.
type FleetHost struct {
	Name     string          `json:"name"`
	LastSeen time.Time       `json:"lastSeen"`
	Gone     bool            `json:"gone"`
	Error    string          `json:"error,omitempty"`
	Info     *fleet.HostInfo `json:"info,omitempty"`
	// Processes leave out the files their DWARF names.
	Processes []fleet.Process `json:"processes"`
}

// Service is one module the fleet runs, with its running revisions and
// its clone's state.
type Service struct {
	Module    string       `json:"module"`
	Revisions []ServiceRev `json:"revisions"`
	Source    SourceState  `json:"source"`
}

// ServiceRev is one revision of a service and how many processes run it.
type ServiceRev struct {
	Revision  string `json:"revision"`
	Modified  bool   `json:"modified,omitempty"`
	Processes int    `json:"processes"`
	// NoCode says why the page shows no code for these processes (their
	// binaries name no revision), and what to do; Note what the code
	// shown may not be (a build of a modified checkout).
	NoCode string `json:"noCode,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Why a revision's code is not shown, or not exactly what runs.
const (
	noRevision = "Their binaries carry no vcs.revision, so the page cannot tell which commit's code they run. " +
		"Build them with -buildvcs=true in a git checkout of the module (go build's default there, unless GOFLAGS, a copied source tree or a bare `go build file.go` turns it off)."
	modifiedBuild = "Built from a checkout with uncommitted changes: the code shown is the commit's, and the lines that run may differ from it."
)

// fleetView is the data of the "fleet" event and of GET /api/fleet.
type fleetView struct {
	Hosts    []FleetHost `json:"hosts"`
	Services []Service   `json:"services"`
}

func (h *hub) view(hosts []fleet.HostEntry) fleetView {
	v := fleetView{Hosts: []FleetHost{}, Services: []Service{}}
	svc := map[string]map[string]*ServiceRev{}
	for _, e := range hosts {
		fh := FleetHost{Name: e.Name, LastSeen: e.LastSeen, Gone: e.Gone, Error: e.Error, Processes: []fleet.Process{}}
		if e.Profile != nil {
			info := e.Profile.Host
			fh.Info = &info
			for _, p := range e.Profile.Processes {
				p.Files = nil
				fh.Processes = append(fh.Processes, p)
				if e.Gone || p.Module == "" {
					continue
				}
				if svc[p.Module] == nil {
					svc[p.Module] = map[string]*ServiceRev{}
				}
				key := p.Revision
				if p.Modified {
					key += "+modified"
				}
				r := svc[p.Module][key]
				if r == nil {
					r = &ServiceRev{Revision: p.Revision, Modified: p.Modified}
					switch {
					case p.Revision == "":
						r.NoCode = noRevision
					case p.Modified:
						r.Note = modifiedBuild
					}
					svc[p.Module][key] = r
				}
				r.Processes++
			}
		}
		v.Hosts = append(v.Hosts, fh)
	}
	for mod, revs := range svc {
		s := Service{Module: mod, Source: h.sources.State(mod)}
		for _, r := range revs {
			s.Revisions = append(s.Revisions, *r)
		}
		sort.Slice(s.Revisions, func(i, j int) bool {
			a, b := s.Revisions[i], s.Revisions[j]
			return a.Revision < b.Revision || a.Revision == b.Revision && !a.Modified && b.Modified
		})
		v.Services = append(v.Services, s)
	}
	sort.Slice(v.Services, func(i, j int) bool { return v.Services[i].Module < v.Services[j].Module })
	return v
}

func (h *hub) setHosts(hosts []fleet.HostEntry) {
	b, _ := json.Marshal(h.view(hosts))
	h.mu.Lock()
	h.hosts = hosts
	changed := string(b) != string(h.fleetJ)
	h.fleetJ = b
	h.mu.Unlock()
	if changed {
		h.broadcast(func(s *subscriber) { s.setLatest("fleet", b) })
	}
}

// refreshFleet sends the pages the fleet again (the clones' states moved).
func (h *hub) refreshFleet() {
	h.mu.Lock()
	hosts := h.hosts
	h.mu.Unlock()
	h.setHosts(hosts)
}

// fetchRevisions fetches, in the background, each revision processes run
// that its module's clone does not hold yet.
func (h *hub) fetchRevisions(ctx context.Context, hosts []fleet.HostEntry) {
	for _, e := range hosts {
		if e.Gone || e.Profile == nil {
			continue
		}
		for _, p := range e.Profile.Processes {
			if p.Module == "" || !revisionRe.MatchString(p.Revision) || h.sources.Known(p.Module, p.Revision) {
				continue
			}
			key := p.Module + "@" + p.Revision
			h.mu.Lock()
			busy := h.fetching[key]
			h.fetching[key] = true
			h.mu.Unlock()
			if busy {
				continue
			}
			h.fetches.Add(1)
			go func(mod, rev string) {
				defer h.fetches.Done()
				defer func() {
					h.mu.Lock()
					delete(h.fetching, key)
					h.mu.Unlock()
				}()
				h.refreshFleet()
				if err := h.sources.EnsureRevision(ctx, mod, rev); err != nil && ctx.Err() == nil {
					h.notice(fmt.Sprintf("fetching revision %s of %s: %v", fleet.ShortRevision(rev), mod, err))
				}
				h.refreshFleet()
			}(p.Module, p.Revision)
		}
	}
}

// pollTracepoints lists the declared tracepoints every TracepointsEvery,
// watches the status of each, and sends the pages the whole list when
// anything changed (at most every TracepointsEvery).
func (h *hub) pollTracepoints(ctx context.Context) {
	t := time.NewTicker(h.opts.TracepointsEvery)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		specs, err := h.c.Tracepoints(qctx)
		cancel()
		if err == nil {
			h.setSpecs(ctx, specs)
		} else if ctx.Err() == nil {
			h.notice(fmt.Sprintf("listing the tracepoints: %v", err))
		}
		h.publishTracepoints()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *hub) setSpecs(ctx context.Context, specs []fleet.Spec) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		seen[s.ID] = true
		if old, ok := h.specs[s.ID]; !ok || !sameSpec(old, s) {
			h.tpDirty = true
		}
		h.specs[s.ID] = s
		if h.watch[s.ID] == nil {
			wctx, cancel := context.WithCancel(ctx)
			h.watch[s.ID] = cancel
			go h.watchStatus(wctx, s.ID)
		}
	}
	for id, cancel := range h.watch {
		if !seen[id] {
			cancel()
			delete(h.watch, id)
			delete(h.specs, id)
			delete(h.status, id)
			h.tpDirty = true
		}
	}
}

// sameSpec compares two specs but for the expiry that leases move on.
func sameSpec(a, b fleet.Spec) bool {
	a.Limits.ExpiresAt, b.Limits.ExpiresAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func (h *hub) watchStatus(ctx context.Context, id string) {
	ch, err := h.c.WatchStatus(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			h.notice(fmt.Sprintf("watching the status of tracepoint %s: %v", id, err))
		}
		return
	}
	for ev := range ch {
		key := fmt.Sprintf("%s/%d", ev.Host, ev.Pid)
		h.mu.Lock()
		if _, live := h.watch[id]; live {
			if h.status[id] == nil {
				h.status[id] = make(map[string]fleet.Status)
			}
			if ev.Deleted {
				delete(h.status[id], key)
			} else {
				h.status[id][key] = ev.Status
			}
			h.tpDirty = true
		}
		h.mu.Unlock()
	}
}

// TracepointView is one tracepoint as the page shows it.
type TracepointView struct {
	Spec     fleet.Spec     `json:"spec"`
	Statuses []fleet.Status `json:"statuses"`
	Hits     uint64         `json:"hits"`
	Dropped  uint64         `json:"dropped"`
	// Mine says the tracepoint is owned by a page of this server.
	Mine bool `json:"mine"`
	// Expiry is when it ends as its user set it from a page of this
	// server; zero if it ends with its page, or was set elsewhere (its
	// spec's limits.expiresAt then says when agents drop it).
	Expiry time.Time `json:"expiry,omitzero"`
}

func (h *hub) tracepoints() []TracepointView {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tracepointsLocked()
}

// Lock should be held.
func (h *hub) tracepointsLocked() []TracepointView {
	out := make([]TracepointView, 0, len(h.specs))
	for id, s := range h.specs {
		v := TracepointView{Spec: s, Statuses: []fleet.Status{}, Mine: strings.HasPrefix(s.Owner, ownerPrefix)}
		if h.until != nil {
			v.Expiry = h.until(id)
		}
		for _, st := range h.status[id] {
			v.Statuses = append(v.Statuses, st)
			v.Hits += st.Hits
			v.Dropped += st.Dropped
		}
		sort.Slice(v.Statuses, func(i, j int) bool {
			a, b := v.Statuses[i], v.Statuses[j]
			return a.Host < b.Host || a.Host == b.Host && a.Pid < b.Pid
		})
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Spec, out[j].Spec
		return a.Created.Before(b.Created) || a.Created.Equal(b.Created) && a.ID < b.ID
	})
	return out
}

// markDirty makes the next poll send the pages the list.
func (h *hub) markDirty() {
	h.mu.Lock()
	h.tpDirty = true
	h.mu.Unlock()
}

// publishTracepoints sends the pages the list if it changed.
func (h *hub) publishTracepoints() {
	h.mu.Lock()
	if !h.tpDirty {
		h.mu.Unlock()
		return
	}
	h.tpDirty = false
	b, _ := json.Marshal(h.tracepointsLocked())
	h.tpsJ = b
	h.mu.Unlock()
	h.broadcast(func(s *subscriber) { s.setLatest("tracepoints", b) })
}

// addGroup makes the timeline group hits by name too (a page's tracepoint
// captured it as its group).
func (h *hub) addGroup(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range h.groups {
		if g == name {
			return
		}
	}
	h.groups = append(h.groups, name)
}

// group is the timeline's Group: the first of the group names a hit
// captured, as fleet.GroupBy reads it.
func (h *hub) group(hit *fleet.Hit) string {
	h.mu.Lock()
	names := h.groups
	h.mu.Unlock()
	return fleet.GroupBy(names...)(hit)
}

// readTimeline reads the hit stream in execution order and sends each hit
// to the pages; it reopens the reader after an error.
func (h *hub) readTimeline(ctx context.Context) {
	for ctx.Err() == nil {
		tr, err := h.c.Timeline(ctx, fleet.HitOptions{}, fleet.TimelineOptions{Group: h.group})
		if err != nil {
			h.notice(fmt.Sprintf("opening the hit stream: %v", err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		tr.Notice = h.notice
		for {
			p, err := tr.Next(ctx)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				if _, ok := err.(*fleet.Error); ok {
					h.notice(err.Error()) // a malformed message: the reader goes on
					continue
				}
				h.notice(fmt.Sprintf("reading the hit stream: %v; reopening it", err))
				break
			}
			h.addHit(p)
		}
		tr.Close()
	}
}

func (h *hub) addHit(p fleet.Placed) {
	b, err := json.Marshal(p)
	if err != nil {
		return
	}
	h.mu.Lock()
	if len(h.recent) == maxRecent {
		copy(h.recent, h.recent[1:])
		h.recent = h.recent[:maxRecent-1]
	}
	h.recent = append(h.recent, p)
	h.mu.Unlock()
	h.broadcast(func(s *subscriber) { s.addHit(b) })
}

// notice sends the pages a message about the fleet (a fetch failing, an
// agent silent) and logs it.
func (h *hub) notice(msg string) {
	h.opts.Log.Warn(msg)
	b, _ := json.Marshal(map[string]string{"message": msg, "time": time.Now().UTC().Format(time.RFC3339)})
	h.broadcast(func(s *subscriber) { s.addEvent("notice", b) })
}

func (h *hub) broadcast(f func(*subscriber)) {
	h.mu.Lock()
	subs := make([]*subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		f(s)
	}
}

// subscribe adds an event stream; it starts with the current fleet,
// tracepoints and recent hits.
func (h *hub) subscribe() *subscriber {
	s := newSubscriber()
	h.mu.Lock()
	h.subs[s] = struct{}{}
	fl, tps := h.fleetJ, h.tpsJ
	recent := append([]fleet.Placed(nil), h.recent...)
	h.mu.Unlock()
	if fl != nil {
		s.setLatest("fleet", fl)
	}
	if tps == nil {
		tps, _ = json.Marshal(h.tracepoints())
	}
	s.setLatest("tracepoints", tps)
	for _, p := range recent {
		b, _ := json.Marshal(p)
		s.addHit(b)
	}
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// subscriber is one event stream's queue. Snapshots (fleet, tracepoints)
// keep only their latest value; hits and notices queue up to maxQueue,
// past which the oldest are dropped and the page is told how many.
type subscriber struct {
	wake chan struct{}

	// mu guards everything below.
	mu      sync.Mutex
	latest  map[string][]byte
	queue   []sse
	dropped int
}

type sse struct {
	event string
	data  []byte
}

// maxQueue bounds what a slow page can make the server hold.
const maxQueue = 2000

func newSubscriber() *subscriber {
	return &subscriber{wake: make(chan struct{}, 1), latest: make(map[string][]byte)}
}

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) setLatest(event string, data []byte) {
	s.mu.Lock()
	s.latest[event] = data
	s.mu.Unlock()
	s.signal()
}

func (s *subscriber) addHit(data []byte) { s.addEvent("hit", data) }

func (s *subscriber) addEvent(event string, data []byte) {
	s.mu.Lock()
	if len(s.queue) >= maxQueue {
		s.queue = s.queue[1:]
		s.dropped++
	}
	s.queue = append(s.queue, sse{event, data})
	s.mu.Unlock()
	s.signal()
}

// take empties the queue: snapshots first (in a fixed order), then what
// was dropped, then the queued events.
func (s *subscriber) take() []sse {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sse
	for _, ev := range []string{"fleet", "tracepoints"} {
		if b, ok := s.latest[ev]; ok {
			out = append(out, sse{ev, b})
			delete(s.latest, ev)
		}
	}
	if s.dropped > 0 {
		b, _ := json.Marshal(map[string]int{"dropped": s.dropped})
		out = append(out, sse{"lost", b})
		s.dropped = 0
	}
	out = append(out, s.queue...)
	s.queue = nil
	return out
}
