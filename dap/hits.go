package dap

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
)

// What the editor shows of hits besides a line per hit: the hits view
// (breakpoints, then processes, then their recent hits), the timeline (the
// session's hits in execution order) and the debug console's summary. The
// hit pump records every hit in the session's hitLog; the custom requests
// riptrace/hits, riptrace/timeline and riptrace/openHit read it, and the
// session's ticker tells the editor that there is something new with a
// riptraceHits event a few times a second and writes the console's counts
// once a second.
//
// The event says how many hits are new and of which breakpoints, never
// the hits themselves: the views ask for the rows they show, one request
// at a time, so what they are sent slows down with the editor; an event's
// rows would be pushed whether shown or not. In VS Code each event crosses
// the workbench twice (adapter → window → extension), and at 500 hits a
// second rows in events made a backlog on a busy machine that grew until
// the views' answers, queued behind it, came minutes late.

// The values of the consoleHits attribute.
const (
	consoleSummary = "summary" // the first hits of a breakpoint in full, then a count per second
	consoleAll     = "all"     // every hit in full
)

const (
	// fullHits is how many hits of a breakpoint the console shows in full
	// before it counts them.
	fullHits = 3
	// quietResets is how long a breakpoint goes without hits before its
	// next ones show in full again.
	quietResets = 10 * time.Second
	// summaryEvery is how often the console counts the hits it did not show.
	summaryEvery = time.Second
	// eventEvery is how often a riptraceHits event says what is new.
	eventEvery = 200 * time.Millisecond
	// recentPerProcess is how many hits of each process the hits view keeps.
	recentPerProcess = 10
	// timelineLen is how many hits the timeline keeps.
	timelineLen = 500
)

// Custom requests and events (VS Code's customRequest, nvim-dap's
// session:request). Their names are stable: the plugins use them.
const (
	RequestHits     = "riptrace/hits"     // the hits view: breakpoints → processes → recent hits
	RequestTimeline = "riptrace/timeline" // the session's recent hits in execution order
	RequestOpenHit  = "riptrace/openHit"  // open a hit as a snapshot
	EventHits       = "riptraceHits"      // what is new since the last one
)

// HitsEvent is the body of a riptraceHits event: how many hits the session
// recorded since the last one, and the breakpoints they hit. The rows are
// the views' to ask for (riptrace/hits, riptrace/timeline).
type HitsEvent struct {
	Count       int   `json:"count"`
	Breakpoints []int `json:"breakpoints"`
}

// HitRow is one hit as the hits view and the timeline show it.
type HitRow struct {
	Seq        uint64 `json:"seq"`            // in the hit stream
	Part       int    `json:"part,omitempty"` // in its message: the hits of a batch share its seq
	Order      uint64 `json:"order"`          // in the timeline
	Breakpoint int    `json:"breakpoint"`
	Host       string `json:"host"`
	Pid        int    `json:"pid"`
	Exe        string `json:"exe"`
	Goroutine  int64  `json:"goroutine"`
	Function   string `json:"function"`
	// Time is when the hit ran, on the server's clock; ServerTime when it
	// reached the stream.
	Time       time.Time `json:"time"`
	ServerTime time.Time `json:"serverTime"`
	Path       string    `json:"path,omitempty"` // in the local checkout; "" when outside it
	Line       int       `json:"line"`
	Values     string    `json:"values"` // name=value ..., each as fleet.Variable.Shown words it
	Message    string    `json:"message,omitempty"`
	// Late and Uncertain mark an order not to be trusted (fleet.Placed).
	Late      bool   `json:"late,omitempty"`
	Uncertain bool   `json:"uncertain,omitempty"`
	Note      string `json:"note,omitempty"`
	// Group names the hit's request: its W3C trace id, or the value the
	// group attribute names (fleet.Placed.Group).
	Group string `json:"group,omitempty"`
}

// BreakpointHits is one breakpoint in the hits view.
type BreakpointHits struct {
	ID        int           `json:"id"`
	Path      string        `json:"path"`
	Line      int           `json:"line"`
	Function  string        `json:"function,omitempty"` // of a function breakpoint
	Verified  bool          `json:"verified"`
	Message   string        `json:"message"`
	Backend   string        `json:"backend"` // asked for in the configuration
	Count     uint64        `json:"count"`
	Processes []ProcessHits `json:"processes"`
}

// ProcessHits is one process under a breakpoint in the hits view.
type ProcessHits struct {
	Host  string   `json:"host"`
	Pid   int      `json:"pid"`
	Exe   string   `json:"exe"`
	Count uint64   `json:"count"`
	Hits  []HitRow `json:"hits"` // newest first
}

// logged is a recorded hit: what a snapshot opens and what views show.
// Most hits are only counted, never shown, so a hit's row is built the
// first time a view shows it (hitLog.rowOf), not as it arrives.
type logged struct {
	p        fleet.Placed
	bp       int
	fallback string  // the breakpoint's file: the row's path when the hit's is outside the checkout
	row      *HitRow // nil until a view shows the hit
}

// hitLog is what the session keeps of its hits for the views.
//
// Its timeline keeps up to twice what the view shows and drops the older
// half when full: the view reads the newest (newest), and a hit costs an
// append, not a shift of every hit kept.
type hitLog struct {
	// local maps a hit to the line of the checkout a row links to, or to
	// fallback; set before the first hit.
	local func(fallback string, h *fleet.Hit) (string, int)

	// mu guards the fields below.
	mu       sync.Mutex
	bps      map[int]*breakpointLog
	timeline []*logged // the last timelineLen hits (and up to as many older), in execution order
	nfresh   int       // hits recorded since the last riptraceHits event
}

// breakpointLog is what the hitLog keeps of one breakpoint.
type breakpointLog struct {
	total uint64
	fresh bool // hit since the last riptraceHits event
	procs map[procKey]*processLog
	// The console's summary.
	shown   int       // hits shown in full since the breakpoint was last quiet
	last    time.Time // when its last hit arrived
	counted int       // hits not shown since the last count
	latest  *logged   // the last of them
	hinted  bool      // a count line said where to see the hits
}

type procKey struct {
	host string
	pid  int
}

type processLog struct {
	host   string
	pid    int
	exe    string
	count  uint64
	recent []*logged // the last recentPerProcess hits, oldest first
}

// keepLast appends e to s, which holds the last n of what was appended:
// once s holds 2n, the older n go, so that appending stays cheap and
// newest(s, n) is what is kept.
func keepLast[T any](s []T, e T, n int) []T {
	if len(s) >= 2*n {
		k := copy(s, s[len(s)-n:])
		clear(s[k:])
		s = s[:k]
	}
	return append(s, e)
}

// newest is the last n of s.
func newest[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// rowOf is e as the views show it.
// Lock should be held.
func (l *hitLog) rowOf(e *logged) HitRow {
	if e.row == nil {
		file, line := l.local(e.fallback, &e.p.Hit)
		r := hitRow(e.bp, &e.p, file, line)
		e.row = &r
	}
	return *e.row
}

func newHitLog(local func(fallback string, h *fleet.Hit) (string, int)) *hitLog {
	return &hitLog{local: local, bps: make(map[int]*breakpointLog)}
}

// record keeps one hit of breakpoint bp and reports whether the console
// shows it in full.
func (l *hitLog) record(e *logged, all bool, now time.Time) (full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bps[e.bp]
	if b == nil {
		b = &breakpointLog{procs: make(map[procKey]*processLog)}
		l.bps[e.bp] = b
	}
	b.total++
	b.fresh = true
	h := &e.p.Hit
	key := procKey{h.Host, h.Pid}
	pl := b.procs[key]
	if pl == nil {
		pl = &processLog{host: h.Host, pid: h.Pid, exe: h.Process.Exe}
		b.procs[key] = pl
	}
	pl.count++
	// Exactly the last few: with a thousand processes, more would keep
	// thousands of hits alive for the garbage collector to mark.
	if len(pl.recent) < recentPerProcess {
		pl.recent = append(pl.recent, e)
	} else {
		copy(pl.recent, pl.recent[1:])
		pl.recent[len(pl.recent)-1] = e
	}
	l.timeline = keepLast(l.timeline, e, timelineLen)
	l.nfresh++

	if now.Sub(b.last) > quietResets {
		b.shown = 0
	}
	b.last = now
	if all || b.shown < fullHits {
		b.shown++
		return true
	}
	b.counted++
	b.latest = e
	return false
}

// forget drops what the log keeps of a removed breakpoint.
func (l *hitLog) forget(bp int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.bps, bp)
}

// count is one console line of counts: hits of a breakpoint the console
// did not show since the last one.
type count struct {
	bp      int
	counted int
	total   uint64
	latest  HitRow
	first   bool // the breakpoint's first count line
}

// counts takes the console's pending counts, by breakpoint.
func (l *hitLog) counts() []count {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []count
	for id, b := range l.bps {
		if b.counted > 0 {
			out = append(out, count{bp: id, counted: b.counted, total: b.total, latest: l.rowOf(b.latest), first: !b.hinted})
			b.counted, b.latest, b.hinted = 0, nil, true
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].bp < out[j].bp })
	return out
}

// takeFresh takes how many hits were recorded since the last call and the
// breakpoints they hit, sorted. It builds no row: most hits are never
// shown.
func (l *hitLog) takeFresh() (int, []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nfresh == 0 {
		return 0, nil
	}
	var bps []int
	for id, b := range l.bps {
		if b.fresh {
			bps = append(bps, id)
			b.fresh = false
		}
	}
	sort.Ints(bps)
	n := l.nfresh
	l.nfresh = 0
	return n, bps
}

// find returns the recorded hit of stream sequence seq and part, or the
// latest hit of breakpoint bp when seq is 0.
func (l *hitLog) find(bp int, seq uint64, part int) *logged {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq != 0 {
		tl := newest(l.timeline, timelineLen)
		for i := len(tl) - 1; i >= 0; i-- {
			if h := &tl[i].p.Hit; h.Seq == seq && h.Part == part {
				return tl[i]
			}
		}
		for _, b := range l.bps {
			for _, pl := range b.procs {
				for _, e := range pl.recent {
					if e.p.Hit.Seq == seq && e.p.Hit.Part == part {
						return e
					}
				}
			}
		}
		return nil
	}
	var latest *logged
	if b := l.bps[bp]; b != nil {
		for _, pl := range b.procs {
			if n := len(pl.recent); n > 0 && (latest == nil || pl.recent[n-1].p.Order > latest.p.Order) {
				latest = pl.recent[n-1]
			}
		}
	}
	return latest
}

// processes lists what the log keeps of breakpoint bp, hosts and pids
// sorted, hits newest first.
func (l *hitLog) processes(bp int) (uint64, []ProcessHits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bps[bp]
	if b == nil {
		return 0, []ProcessHits{}
	}
	out := make([]ProcessHits, 0, len(b.procs))
	for _, pl := range b.procs {
		ph := ProcessHits{Host: pl.host, Pid: pl.pid, Exe: pl.exe, Count: pl.count, Hits: make([]HitRow, 0, len(pl.recent))}
		for i := len(pl.recent) - 1; i >= 0; i-- {
			ph.Hits = append(ph.Hits, l.rowOf(pl.recent[i]))
		}
		out = append(out, ph)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		return out[i].Pid < out[j].Pid
	})
	return b.total, out
}

// timelineSince returns the timeline's hits after order since, at most
// limit of the newest.
func (l *hitLog) timelineSince(since uint64, limit int) []HitRow {
	l.mu.Lock()
	defer l.mu.Unlock()
	tl := newest(l.timeline, timelineLen)
	i := sort.Search(len(tl), func(i int) bool { return tl[i].p.Order > since })
	rows := tl[i:]
	if limit > 0 && len(rows) > limit {
		rows = rows[len(rows)-limit:]
	}
	out := make([]HitRow, len(rows))
	for j, e := range rows {
		out[j] = l.rowOf(e)
	}
	return out
}

// hitRow is p as the views show it, at the local line file:line.
func hitRow(bp int, p *fleet.Placed, file string, line int) HitRow {
	h := &p.Hit
	return HitRow{
		Seq: h.Seq, Part: h.Part, Order: p.Order, Breakpoint: bp, Host: h.Host, Pid: h.Pid, Exe: h.Process.Exe, Goroutine: h.Goroutine,
		Function: h.Function, Time: p.CoordinatedTime, ServerTime: h.ServerTime, Path: file, Line: line,
		Values: hitValues(h), Message: h.Message, Late: p.Late, Uncertain: p.Uncertain, Note: p.Note, Group: p.Group,
	}
}

// hitValues is a hit's arguments, locals and expressions on one line.
func hitValues(h *fleet.Hit) string {
	var parts []string
	for _, vs := range [][]fleet.Variable{h.Args, h.Locals, h.Exprs} {
		for i := range vs {
			parts = append(parts, vs[i].Name+"="+strings.Join(strings.Fields(vs[i].Shown()), " "))
		}
	}
	return strings.Join(parts, " ")
}

// tick runs beside the hit pump: each eventEvery it says in a riptraceHits
// event how many hits are new and of which breakpoints, and each
// summaryEvery it writes the console's counts.
func (ss *session) tick() {
	events := time.NewTicker(eventEvery)
	defer events.Stop()
	summaries := time.NewTicker(summaryEvery)
	defer summaries.Stop()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case <-events.C:
			if n, bps := ss.shown.takeFresh(); n > 0 {
				ss.send(&customEvent{Event: ss.event(EventHits), Body: HitsEvent{Count: n, Breakpoints: bps}})
			}
		case <-summaries.C:
			ss.writeCounts()
		}
	}
}

// writeCounts writes one console line per breakpoint with hits the console
// did not show in the last second.
func (ss *session) writeCounts() {
	for _, c := range ss.shown.counts() {
		id := c.bp
		r := &c.latest
		text := fmt.Sprintf("breakpoint %d: %s more in the last second (%d in all); last on %s %s[%d]",
			id, plural(c.counted, "hit"), c.total, r.Host, filepath.Base(r.Exe), r.Pid)
		if r.Values != "" {
			text += ": " + truncateRunes(r.Values, 60)
		}
		if c.first {
			// Once per breakpoint: where the hits not shown are.
			text += fmt.Sprintf("\n  (one line a second from now on: the RipTrace hits view lists the hits, and `snapshot %d` opens the latest)", id)
		}
		text += "\n"
		ev := &dap.OutputEvent{Event: ss.event("output"), Body: dap.OutputEventBody{Category: "console", Output: text, Line: r.Line}}
		if r.Path != "" {
			ev.Body.Source = &dap.Source{Name: filepath.Base(r.Path), Path: r.Path}
		}
		ss.send(ev)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// customEvent is an event go-dap does not know.
type customEvent struct {
	dap.Event
	Body any `json:"body,omitempty"`
}

// customResponse answers a request go-dap does not know.
type customResponse struct {
	dap.Response
	Body any `json:"body,omitempty"`
}

// isCustom reports whether command is one of the adapter's own requests.
func isCustom(command string) bool {
	return command == RequestHits || command == RequestTimeline || command == RequestOpenHit
}

// dispatchCustom handles one of the adapter's own requests, under
// recoverPanic as every handler.
func (ss *session) dispatchCustom(r *dap.Request, args json.RawMessage) {
	defer ss.recoverPanic(r)
	if why := ss.notAttached(); why != "" {
		ss.sendError(r.Seq, r.Command, ErrNotAttached, r.Command+" "+why)
		return
	}
	var body any
	switch r.Command {
	// The hits view: every breakpoint with its processes and their recent
	// hits.
	case RequestHits:
		body = map[string]any{"breakpoints": ss.breakpointHits()}
	// The timeline panel: the session's hits in execution order, after
	// "since" (an order) and at most "limit" of the newest.
	case RequestTimeline:
		var a struct {
			Since uint64 `json:"since"`
			Limit int    `json:"limit"`
		}
		if len(args) > 0 && json.Unmarshal(args, &a) != nil {
			ss.sendError(r.Seq, r.Command, ErrBadArguments, RequestTimeline+` takes {"since": ORDER, "limit": N}`)
			return
		}
		body = map[string]any{"hits": ss.shown.timelineSince(a.Since, a.Limit)}
	// A click on a hit, a code lens or a timeline row: the hit "seq" (and
	// "part", in a batch), or the latest hit of "breakpoint" or of the
	// breakpoint at "path" and "line" (1-based), opens as a snapshot.
	case RequestOpenHit:
		var a struct {
			Breakpoint int    `json:"breakpoint"`
			Seq        uint64 `json:"seq"`
			Part       int    `json:"part"`
			Path       string `json:"path"`
			Line       int    `json:"line"`
		}
		if len(args) == 0 || json.Unmarshal(args, &a) != nil || (a.Seq == 0 && a.Breakpoint == 0 && (a.Path == "" || a.Line <= 0)) {
			ss.sendError(r.Seq, r.Command, ErrBadArguments, RequestOpenHit+` takes {"seq": N}, {"breakpoint": ID} or {"path": FILE, "line": LINE}`)
			return
		}
		res, err := ss.openHit(a.Breakpoint, a.Seq, a.Part, a.Path, a.Line)
		if err != nil {
			ss.sendError(r.Seq, r.Command, ErrNoSnapshot, err.Error())
			return
		}
		body = res
	}
	ss.send(&customResponse{Response: ss.response(r), Body: body})
}

// breakpointHits lists the session's breakpoints for the hits view, in
// file and line order.
func (ss *session) breakpointHits() []BreakpointHits {
	ss.mu.Lock()
	var bs []*breakpoint
	for _, b := range ss.byTracepoint {
		bs = append(bs, b)
	}
	ss.mu.Unlock()
	sort.Slice(bs, func(i, j int) bool {
		if bs[i].file != bs[j].file {
			return bs[i].file < bs[j].file
		}
		if bs[i].line != bs[j].line {
			return bs[i].line < bs[j].line
		}
		return bs[i].id < bs[j].id
	})
	out := make([]BreakpointHits, 0, len(bs))
	for _, b := range bs {
		st := b.current()
		bh := BreakpointHits{ID: b.id, Path: b.file, Line: b.line, Function: b.fn, Verified: st.Verified, Message: st.Message, Backend: ss.cfg.Backend}
		bh.Count, bh.Processes = ss.shown.processes(b.id)
		out = append(out, bh)
	}
	return out
}

// openHit opens a recorded hit as a snapshot: the hit seq, or the latest
// of breakpoint bp, or of the breakpoint at path:line.
func (ss *session) openHit(bp int, seq uint64, part int, path string, line int) (map[string]any, error) {
	var b *breakpoint
	ss.mu.Lock()
	for _, bb := range ss.byTracepoint {
		switch {
		case bp != 0 && bb.id == bp:
			b = bb
		case bp == 0 && seq == 0 && bb.file == path && bb.line == line:
			b = bb
		}
	}
	ss.mu.Unlock()
	if b == nil && seq == 0 {
		if bp != 0 {
			return nil, fmt.Errorf("no breakpoint %d in this session: it was removed", bp)
		}
		return nil, fmt.Errorf("no breakpoint of this session is on %s:%d: set one there, or open a hit from the RipTrace hits view", filepath.Base(path), line)
	}
	id := 0
	if b != nil {
		id = b.id
	}
	e := ss.shown.find(id, seq, part)
	switch {
	case e == nil && seq != 0:
		return nil, fmt.Errorf("hit #%s is no longer kept: open a newer one from the RipTrace hits view", fleet.HitNumber(seq, part))
	case e == nil:
		return nil, fmt.Errorf("breakpoint %d has no hit yet: its message says where it is installed", id)
	}
	if b == nil {
		ss.mu.Lock()
		for _, bb := range ss.byTracepoint {
			if bb.id == e.bp {
				b = bb
			}
		}
		ss.mu.Unlock()
		if b == nil {
			return nil, fmt.Errorf("hit #%s belongs to a breakpoint that was removed", fleet.HitNumber(seq, part))
		}
	}
	title := ss.openSnapshot(b, e.p.Hit, true)
	res := map[string]any{"seq": e.p.Hit.Seq, "breakpoint": b.id, "title": title}
	if e.p.Hit.Part > 0 {
		res["part"] = e.p.Hit.Part
	}
	return res, nil
}
