package fleet

import (
	"container/heap"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"math"
	"slices"
	"strings"
	"time"
)

// Timeline puts hits in the order they ran, across hosts. It is a
// deterministic function of the hit stream read in stream order: every
// client that feeds it the same prefix of the stream gets the same hits, in
// the same order, with the same marks. Clients share it instead of each
// ordering hits their own way (docs/timeline.md has the design).
//
// A hit's place is its coordinated time: its capture time on its agent's
// clock plus the offset of that clock to the server's (Hit.Clock). Hits
// are held until no hit that ran before them can still come. That is known
// from the agents' watermarks, which travel in the stream among the hits:
// agent A's watermark says that every hit A captured before its Time is
// already in the stream, and that each hit A publishes after it reaches
// the stream within its Lag of capture. Read against the stream's own
// timestamps (the server's clock, not the reader's), this gives each agent
// a frontier: max(watermark time, stream time - Lag) in coordinated time,
// less the clock's error bound. The timeline releases, in coordinated-time
// order, every held hit before the lowest frontier. An agent that stops
// talking therefore holds the others back by its Lag at most, capped at
// MaxHold: no agent can freeze the timeline.
//
// A hit that arrives behind what was already released (it broke its
// agent's promise: the agent was cut off from NATS, say) is released at
// once and marked Late; its coordinated time says where it belongs. Two
// hits of different hosts closer than their clocks' combined error bounds
// may have run the other way round: the later one is marked Uncertain. A
// hit whose agent has no clock, or whose coordinated time is absurd (ahead
// of the server's time at arrival, or older than a day), is placed at its
// arrival and marked Uncertain with a note: it cannot reorder the others.
//
// A Timeline is not safe for concurrent use.
type Timeline struct {
	opts TimelineOptions

	now      int64 // the stream's time: the latest ServerTime read
	warm     int64 // until this stream time, agents not yet heard from may speak
	released int64 // everything at or before this coordinated time is out
	order    uint64
	agents   map[string]*timelineAgent
	// byMark and byLag hold every agent not final, so that release finds
	// the lowest frontier without working out each agent's (see
	// lowestFrontier).
	byMark, byLag frontierHeap
	// talking are the agents neither final nor said to be silent, the
	// one heard from longest ago first: those release may find silent.
	talking talkList
	held    heldHeap
	out     []Placed // what the last call released; reused
	// recent are released hits near the frontier, from recentHead on, to
	// find the uncertain pairs; recentMax is the largest bound among them.
	recent []recentHit
	// lastSeq, lastPart and lastC are the stream sequence, part and
	// coordinated time of the last hit released in place.
	lastSeq    uint64
	lastPart   int
	lastC      int64
	recentHead int
	recentMax  int64
	// calls are the spans that crossed hosts, by trace and span id: what
	// the callees' hits say of when the call ran (see callOrder).
	calls      map[callKey]*call
	callsSwept int64 // stream time of the last sweep of calls
	notices    []string
}

// callKey names the span of a call: the caller's, which its callee
// received with the request.
type callKey struct{ trace, span string }

// call is what the timeline knows of one call's callee side: the hits
// whose span is the caller's, received with the request (Remote). They
// all ran while the call did, after its caller sent it and before the
// caller's goroutine went on: afterLow is the latest "certainly after"
// time among them (coordinated time less bound) and beforeHigh the
// earliest "certainly before" (plus bound).
type call struct {
	afterLow, beforeHigh int64
	last                 int64 // stream time it was last seen
}

// TimelineOptions configure a Timeline.
type TimelineOptions struct {
	// MaxHold is the longest the timeline waits for any agent, in the
	// stream's time; 0 means DefaultMaxHold.
	MaxHold time.Duration
	// Group, if set, names the request a hit belongs to (Placed.Group)
	// when the hit has no trace context: a hit that captured one is in
	// the group of its W3C trace id, whatever Group says.
	Group func(*Hit) string
}

// WatermarkKeepalive is the longest an agent stays silent in the hit
// stream: with no hit to publish, it still publishes a watermark this
// often.
const WatermarkKeepalive = time.Second

// Timeline defaults: the longest wait for an agent, how long an agent may
// be silent before the timeline says so, and the span of the past a
// capture time may claim before it is taken as absurd.
const (
	DefaultMaxHold = 2 * time.Second
	silentAfter    = 2 * time.Second
	maxPast        = 24 * time.Hour
	maxAhead       = time.Second
	// uncertainCap caps a bound where it is compared: past a second, a
	// hit's order against the others is uncertain anyway.
	uncertainCap = int64(time.Second)
)

// Placed is a hit in the timeline.
type Placed struct {
	Hit
	// Order is the hit's place in the timeline, from 1.
	Order uint64 `json:"order"`
	// CoordinatedTime is when the hit ran on the server's clock.
	CoordinatedTime time.Time `json:"coordinatedTime"`
	// Offset and Bound are the agent's clock offset and its error bound
	// in nanoseconds, null when unknown.
	Offset *int64 `json:"offset"`
	Bound  *int64 `json:"bound"`
	// Late says the hit came after hits that ran after it had been
	// released: it is out of place, and CoordinatedTime says where it
	// belongs.
	Late bool `json:"late"`
	// Uncertain says the hit may have run before the one released before
	// it (UncertainWith and UncertainWithPart, its stream sequence and
	// part, see Hit.Number; UncertainWith is 0 when the hit's own time is
	// in doubt, see Note).
	Uncertain         bool   `json:"uncertain"`
	UncertainWith     uint64 `json:"uncertainWith,omitempty"`
	UncertainWithPart int    `json:"uncertainWithPart,omitempty"`
	// OrderedByCall and OrderedByCallPart name a hit of another host that
	// the clocks alone could not order against this one, but a call
	// between them did (see Timeline): this hit ran after it.
	OrderedByCall     uint64 `json:"orderedByCall,omitempty"`
	OrderedByCallPart int    `json:"orderedByCallPart,omitempty"`
	// Note says why the hit was placed by its arrival, if it was.
	Note string `json:"note,omitempty"`
	// Group names the request the hit belongs to: its W3C trace id, or
	// else what TimelineOptions.Group says.
	Group string `json:"group,omitempty"`
}

type timelineAgent struct {
	host string
	lag  int64 // its promise, capped at MaxHold; MaxHold until it gives one
	mark int64 // its watermark in coordinated time; MinInt64 if none
	// promised is its latest watermark on its own clock: a hit captured
	// after it kept the agent's promise whatever the clocks say.
	promised int64
	clock    *ClockReading
	last     int64 // stream time of its last message
	final    bool
	silent   bool // said so in a notice
	absurd   bool // said so in a notice
	capped   bool // said so in a notice
	noClock  bool // said so in a notice
	lastT    int64
	lastC    int64
	hasLast  bool

	// wait is lag plus its clock's bound, capped: how far its frontier
	// trails the stream's time when no watermark holds it further on.
	wait int64
	// in is the heap of frontiers it is in, at index; nil when final.
	in    *frontierHeap
	index int
	// prev and next link it in Timeline.talking, when it is there.
	prev, next *timelineAgent
	listed     bool
}

// TimelineHost is what the timeline knows of one agent.
type TimelineHost struct {
	Host  string        `json:"host"`
	Clock *ClockReading `json:"clock,omitempty"`
	Lag   time.Duration `json:"lag"`
	// Behind is how far the agent's frontier lags the stream's time.
	Behind   time.Duration `json:"behind"`
	LastSeen time.Time     `json:"lastSeen"`
	Final    bool          `json:"final,omitempty"`
}

type heldHit struct {
	c, t int64
	p    *Placed
}

type heldHeap []heldHit

func (h heldHeap) Len() int { return len(h) }
func (h heldHeap) Less(i, j int) bool {
	a, b := &h[i], &h[j]
	switch {
	case a.c != b.c:
		return a.c < b.c
	case a.p.Host != b.p.Host:
		return a.p.Host < b.p.Host
	case a.t != b.t:
		return a.t < b.t
	case a.p.Pid != b.p.Pid:
		return a.p.Pid < b.p.Pid
	case a.p.Seq != b.p.Seq:
		return a.p.Seq < b.p.Seq
	}
	return a.p.Part < b.p.Part
}
func (h heldHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *heldHeap) Push(x any)   { *h = append(*h, x.(heldHit)) }
func (h *heldHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = heldHit{}
	*h = old[:len(old)-1]
	return x
}

type recentHit struct {
	c, b  int64
	host  string
	seq   uint64
	part  int
	trace *TraceContext
}

// NewTimeline returns an empty timeline.
func NewTimeline(opts TimelineOptions) *Timeline {
	if opts.MaxHold <= 0 {
		opts.MaxHold = DefaultMaxHold
	}
	t := &Timeline{opts: opts, now: math.MinInt64, released: math.MinInt64, agents: make(map[string]*timelineAgent), calls: make(map[callKey]*call)}
	t.byLag.longestWait = true
	return t
}

func (t *Timeline) agent(host string) *timelineAgent {
	a := t.agents[host]
	if a == nil {
		a = &timelineAgent{host: host, lag: int64(t.opts.MaxHold), mark: math.MinInt64, promised: math.MinInt64}
		t.agents[host] = a
		t.moved(a)
		t.talking.place(a)
	}
	return a
}

// advance moves the stream's time to st (it never goes back) and marks
// the host as heard from.
func (t *Timeline) advance(st time.Time, a *timelineAgent) {
	if st.IsZero() {
		return
	}
	if n := st.UnixNano(); n > t.now {
		if t.now == math.MinInt64 {
			t.warm = n + int64(WatermarkKeepalive)
		}
		t.now = n
	}
	if a != nil {
		a.last = t.now
		a.silent = false
		t.talking.place(a)
	}
}

// AddHit reads one hit of the stream (Seq and ServerTime set) and returns
// the hits it releases, in timeline order. What any method returns is
// valid until the next call.
func (t *Timeline) AddHit(h Hit) []Placed {
	a := t.agent(h.Host)
	t.advance(h.ServerTime, a)
	out := t.release(t.reuse())
	p := &Placed{Hit: h}
	c := t.coordinate(a, p)
	switch {
	case p.Trace != nil && p.Trace.TraceID != "":
		p.Group = p.Trace.TraceID
	case t.opts.Group != nil:
		p.Group = t.opts.Group(&p.Hit)
	}
	t.noteCall(p, c)
	if c < t.released {
		t.lateOrUncertain(a, p, c)
		t.out = append(out, t.emit(p, c))
		return t.out
	}
	heap.Push(&t.held, heldHit{c: c, t: h.Time, p: p})
	return t.release(out)
}

// lateOrUncertain marks p, whose coordinated time c is before what was
// released already. It is late if its agent broke its promise (it
// published p after a watermark past p's capture), if p came after the
// wait the timeline gives the agent (its agent went silent), or if it is
// further out of place than its clock's bound. Otherwise the agent kept
// its word and only its offset estimate moved, within its bound, between
// its watermark and p: p's place against the hits released before it is
// uncertain, not late.
func (t *Timeline) lateOrUncertain(a *timelineAgent, p *Placed, c int64) {
	if p.Clock == nil || p.Note != "" || p.Time <= a.promised {
		p.Late = true
		return
	}
	b := min(p.Clock.Bound, uncertainCap)
	if satSub(p.ServerTime.UnixNano(), c) > a.lag+b || t.released-c > b {
		p.Late = true
		return
	}
	if t.lastSeq != 0 && t.lastC > c {
		p.Uncertain, p.UncertainWith, p.UncertainWithPart = true, t.lastSeq, t.lastPart
	}
}

// coordinate works out p's coordinated time and fills its clock fields.
func (t *Timeline) coordinate(a *timelineAgent, p *Placed) int64 {
	arrival := p.ServerTime.UnixNano()
	if p.ServerTime.IsZero() {
		arrival = t.now
	}
	if p.Clock == nil {
		p.Uncertain = true
		p.Note = "no clock: the agent's clock was never compared with the server's (is `riptrace server` running?), so the hit is placed at its arrival"
		if !a.noClock {
			a.noClock = true
			t.notices = append(t.notices, fmt.Sprintf("host %s: its agent's clock was never compared with the server's, so its hits are placed by their arrival and their order is uncertain: run `riptrace server`, which answers the agent's clock requests", a.host))
		}
		return arrival
	}
	off, b := p.Clock.Offset, p.Clock.Bound
	p.Offset, p.Bound = &p.Clock.Offset, &p.Clock.Bound
	c, ok := addNoOverflow(p.Time, off)
	switch {
	case !ok || c > arrival+max(2*b, int64(maxAhead)):
		p.Uncertain = true
		p.Note = fmt.Sprintf("capture time %s ahead of the server's time at arrival: the agent's clock is wrong, so the hit is placed at its arrival", time.Duration(satSub(c, arrival)).Round(time.Millisecond))
		t.absurd(a, p.Note)
		return arrival
	case c < arrival-int64(maxPast):
		p.Uncertain = true
		p.Note = fmt.Sprintf("capture time %s before its arrival: the agent's clock is wrong, so the hit is placed at its arrival", time.Duration(satSub(arrival, c)).Round(time.Second))
		t.absurd(a, p.Note)
		return arrival
	}
	if b >= uncertainCap {
		p.Uncertain = true
		p.Note = fmt.Sprintf("the agent's clock is known within %s only", time.Duration(b).Round(time.Millisecond))
	}
	// Within one host, capture order is exact: a step of the offset
	// between two hits must not swap them.
	if a.hasLast && p.Time >= a.lastT && c < a.lastC {
		c = a.lastC
	}
	if !a.hasLast || p.Time >= a.lastT {
		a.lastT, a.lastC, a.hasLast = p.Time, c, true
	}
	return c
}

func (t *Timeline) absurd(a *timelineAgent, note string) {
	if !a.absurd {
		a.absurd = true
		t.notices = append(t.notices, fmt.Sprintf("host %s: %s", a.host, note))
	}
}

// AddWatermark reads one watermark of the stream (ServerTime set) and
// returns the hits it releases.
func (t *Timeline) AddWatermark(w Watermark) []Placed {
	a := t.agent(w.Host)
	t.advance(w.ServerTime, a)
	lag := int64(w.Lag)
	if lag <= 0 || lag > int64(t.opts.MaxHold) {
		if lag > int64(t.opts.MaxHold) && !a.capped {
			a.capped = true
			t.notices = append(t.notices, fmt.Sprintf("host %s: its agent asks for a wait of %s, longer than the timeline's %s: its hits that take longer come marked late", w.Host, time.Duration(w.Lag), t.opts.MaxHold))
		}
		lag = int64(t.opts.MaxHold)
	}
	wasFinal := a.final
	a.lag, a.clock, a.final = lag, w.Clock, w.Final
	a.promised = max(a.promised, w.Time)
	if w.Clock != nil {
		if m, ok := addNoOverflow(w.Time, w.Clock.Offset-w.Clock.Bound); ok && m <= t.now+int64(maxAhead) {
			a.mark = max(a.mark, m)
		}
	}
	t.moved(a)
	if a.final != wasFinal {
		t.talking.place(a)
	}
	return t.release(t.reuse())
}

// reuse returns the buffer of released hits, emptied: what a call returns
// is valid until the next call.
func (t *Timeline) reuse() []Placed {
	clear(t.out)
	return t.out[:0]
}

// Advance moves the stream's time to now without a message, releasing
// what waited for it. A live reader calls it when the stream has been
// quiet for a while. The order stays a function of the stream only if no
// message read afterwards carries a stream time before now: the reader
// moves no further than the server says it has read everything
// (TimelineReader).
func (t *Timeline) Advance(now time.Time) []Placed {
	t.advance(now, nil)
	return t.release(t.reuse())
}

// Flush releases every held hit, in order: the end of a replay.
func (t *Timeline) Flush() []Placed {
	out := t.reuse()
	for t.held.Len() > 0 {
		hh := heap.Pop(&t.held).(heldHit)
		t.released = max(t.released, hh.c)
		out = append(out, t.emit(hh.p, hh.c))
	}
	t.out = out
	return out
}

// Held returns how many hits wait.
func (t *Timeline) Held() int { return t.held.Len() }

// Notices returns, once each, what the timeline has to say about its
// agents: one silent, one whose clock is wrong, one that asks for too
// long a wait.
func (t *Timeline) Notices() []string {
	n := t.notices
	t.notices = nil
	return n
}

// Hosts returns what the timeline knows of each agent, by host name.
func (t *Timeline) Hosts() []TimelineHost {
	var hs []TimelineHost
	for _, a := range t.agents {
		h := TimelineHost{Host: a.host, Clock: a.clock, Lag: time.Duration(a.lag), LastSeen: time.Unix(0, a.last), Final: a.final}
		h.Behind = time.Duration(satSub(t.now, t.frontier(a)))
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b TimelineHost) int { return strings.Compare(a.Host, b.Host) })
	return hs
}

// frontier is the coordinated time before which agent a has nothing more
// to publish, as far as it promised.
func (t *Timeline) frontier(a *timelineAgent) int64 {
	if a.final {
		return math.MaxInt64
	}
	return max(a.mark, satSub(t.now, a.lag+clockBound(a.clock)))
}

// clockBound is the error bound of clock as the frontier counts it: none
// when there is no clock, capped at uncertainCap.
func clockBound(clock *ClockReading) int64 {
	if clock == nil {
		return 0
	}
	return min(clock.Bound, uncertainCap)
}

// moved files agent a's frontier anew after what it said changed it (or
// it is new): first among those that may still be at their watermark,
// whence lowestFrontier moves it as the stream's time passes the
// watermark. A final agent holds nothing back.
func (t *Timeline) moved(a *timelineAgent) {
	if a.in != nil {
		heap.Remove(a.in, a.index)
	}
	if a.final {
		return
	}
	a.wait = a.lag + clockBound(a.clock)
	heap.Push(&t.byMark, a)
}

// lowestFrontier is the lowest frontier of the agents, MaxInt64 if all are
// final, worked out without visiting each agent: a reader of a thousand
// agents pays for one.
//
// An agent's frontier is the greater of its watermark and the stream's
// time less its wait (see frontier). The stream's time only grows, so
// once it is the latter it stays so until the agent's next watermark: such
// agents are in byLag, and the lowest of their frontiers is the one of
// longest wait. The others are in byMark, lowest watermark first. The one
// at the top of byMark whose frontier now follows the stream's time moves
// to byLag; once the top's frontier is its watermark, no other agent of
// byMark is lower than it, whatever theirs are. Each agent moves once
// for each watermark it sends.
func (t *Timeline) lowestFrontier() int64 {
	for len(t.byMark.agents) > 0 {
		a := t.byMark.agents[0]
		if satSub(t.now, a.wait) <= a.mark {
			break
		}
		heap.Pop(&t.byMark)
		heap.Push(&t.byLag, a)
	}
	f := int64(math.MaxInt64)
	if len(t.byMark.agents) > 0 {
		f = t.byMark.agents[0].mark
	}
	if len(t.byLag.agents) > 0 {
		f = min(f, satSub(t.now, t.byLag.agents[0].wait))
	}
	return f
}

// frontierHeap is a heap of agents: by lowest watermark, or by longest
// wait when longestWait is set.
type frontierHeap struct {
	agents      []*timelineAgent
	longestWait bool
}

func (h *frontierHeap) Len() int { return len(h.agents) }
func (h *frontierHeap) Less(i, j int) bool {
	if h.longestWait {
		return h.agents[i].wait > h.agents[j].wait
	}
	return h.agents[i].mark < h.agents[j].mark
}
func (h *frontierHeap) Swap(i, j int) {
	h.agents[i], h.agents[j] = h.agents[j], h.agents[i]
	h.agents[i].index, h.agents[j].index = i, j
}
func (h *frontierHeap) Push(x any) {
	a := x.(*timelineAgent)
	a.in, a.index = h, len(h.agents)
	h.agents = append(h.agents, a)
}
func (h *frontierHeap) Pop() any {
	n := len(h.agents) - 1
	a := h.agents[n]
	h.agents[n] = nil
	h.agents = h.agents[:n]
	a.in, a.index = nil, -1
	return a
}

// talkList lists agents by when they were last heard from, the earliest
// first: those that may be found silent, neither final nor said to be.
type talkList struct{ first, last *timelineAgent }

// place puts a where it belongs after it spoke or said it is final (or is
// new): at the end, as it was heard from last, unless it is final or was
// said to be silent. A message without a stream time changes nothing of
// when it was last heard from, so it goes back where it was.
func (l *talkList) place(a *timelineAgent) {
	l.remove(a)
	if a.final || a.silent {
		return
	}
	// a goes after at, first if at is nil: at the end but for a new agent
	// or one that spoke without a stream time.
	var at *timelineAgent
	if l.last != nil && l.last.last <= a.last {
		at = l.last
	} else {
		for n := l.first; n != nil && n.last <= a.last; n = n.next {
			at = n
		}
	}
	a.listed, a.prev = true, at
	if at == nil {
		a.next, l.first = l.first, a
	} else {
		a.next, at.next = at.next, a
	}
	if a.next == nil {
		l.last = a
	} else {
		a.next.prev = a
	}
}

func (l *talkList) remove(a *timelineAgent) {
	if !a.listed {
		return
	}
	if a.prev == nil {
		l.first = a.next
	} else {
		a.prev.next = a.next
	}
	if a.next == nil {
		l.last = a.prev
	} else {
		a.next.prev = a.prev
	}
	a.prev, a.next, a.listed = nil, nil, false
}

// release emits, in order, the held hits the agents' frontiers have
// passed. out is appended to.
func (t *Timeline) release(out []Placed) []Placed {
	if t.now == math.MinInt64 {
		return out
	}
	f := t.lowestFrontier()
	for a := t.talking.first; a != nil && t.now-a.last > int64(silentAfter); a = t.talking.first {
		a.silent = true
		t.talking.remove(a)
		t.notices = append(t.notices, fmt.Sprintf("host %s: no word from its agent for %s of stream time; the timeline goes on without it, and its hits, if any come, are marked late", a.host, time.Duration(t.now-a.last).Round(100*time.Millisecond)))
	}
	if t.now < t.warm {
		// A reader that starts in the middle of the stream knows only
		// the agents it has heard from; every live agent speaks within
		// WatermarkKeepalive, and until then any may have hits on the way.
		f = min(f, t.now-int64(t.opts.MaxHold))
	}
	if f == math.MaxInt64 {
		f = t.now
	}
	t.released = max(t.released, f)
	for t.held.Len() > 0 && t.held[0].c <= t.released {
		hh := heap.Pop(&t.held).(heldHit)
		out = append(out, t.emit(hh.p, hh.c))
	}
	t.out = out
	return out
}

// emit numbers p and marks it uncertain against the hits released just
// before it.
func (t *Timeline) emit(p *Placed, c int64) Placed {
	t.order++
	p.Order = t.order
	p.CoordinatedTime = time.Unix(0, c)
	if p.Late {
		return *p
	}
	if p.Note != "" {
		// Its own time is in doubt: it is marked, and not compared.
		return *p
	}
	b := min(p.Clock.Bound, uncertainCap)
	t.recentMax = max(t.recentMax, b)
	// Forget what no bound can reach any more.
	for t.recentHead < len(t.recent) && t.recent[t.recentHead].c < c-2*t.recentMax {
		t.recentHead++
	}
	if t.recentHead > 1024 && t.recentHead > len(t.recent)/2 {
		t.recent = append(t.recent[:0], t.recent[t.recentHead:]...)
		t.recentHead = 0
	}
	for i := len(t.recent) - 1; i >= t.recentHead; i-- {
		r := &t.recent[i]
		if r.c < c-b-t.recentMax {
			break
		}
		if r.host != p.Host && c-r.c < b+r.b {
			if t.callOrder(r.trace, r.c, r.b, p.Trace, c, b) {
				if p.OrderedByCall == 0 {
					p.OrderedByCall, p.OrderedByCallPart = r.seq, r.part
				}
				continue
			}
			p.Uncertain, p.UncertainWith, p.UncertainWithPart = true, r.seq, r.part
			p.OrderedByCall, p.OrderedByCallPart = 0, 0
			break
		}
	}
	t.recent = append(t.recent, recentHit{c: c, b: b, host: p.Host, seq: p.Seq, part: p.Part, trace: p.Trace})
	t.lastSeq, t.lastPart, t.lastC = p.Seq, p.Part, c
	return *p
}

// callsKept is how long, in stream time, the timeline remembers a call's
// callee side after its last hit: far longer than any hit is held.
const callsKept = int64(10 * time.Second)

// noteCall records p, placed at c, if it is a callee's hit: its span is
// the caller's, received with the request.
func (t *Timeline) noteCall(p *Placed, c int64) {
	tc := p.Trace
	if tc == nil || !tc.Remote || tc.SpanID == "" || p.Note != "" || p.Clock == nil {
		return
	}
	b := min(p.Clock.Bound, uncertainCap)
	k := callKey{tc.TraceID, tc.SpanID}
	cl := t.calls[k]
	if cl == nil {
		if t.now-t.callsSwept > callsKept {
			t.callsSwept = t.now
			for k, cl := range t.calls {
				if t.now-cl.last > callsKept {
					delete(t.calls, k)
				}
			}
		}
		cl = &call{afterLow: math.MinInt64, beforeHigh: math.MaxInt64}
		t.calls[k] = cl
	}
	cl.afterLow = max(cl.afterLow, c-b)
	cl.beforeHigh = min(cl.beforeHigh, c+b)
	cl.last = t.now
}

// callOrder reports whether a call settles that the hit with trace
// context ta, placed at ca within ba, ran before the one with tb, at cb
// within bb, of another host, where the clocks alone cannot tell.
//
// One of them must be the caller's (its span is the one the other
// received with the request) and the other the callee's. The caller's
// goroutine waits while the call runs, so each of its hits ran either
// before every hit of the callee or after every one: when the clocks put
// the caller's hit certainly before (after) some callee hit, it ran
// before (after) all of them. This assumes the call was made, and waited
// for, by the goroutine of the caller's hit, as a request handler calls
// the next service.
func (t *Timeline) callOrder(ta *TraceContext, ca, ba int64, tb *TraceContext, cb, bb int64) bool {
	if ta == nil || tb == nil || ta.TraceID != tb.TraceID || ta.SpanID != tb.SpanID || ta.Remote == tb.Remote {
		return false
	}
	cl := t.calls[callKey{ta.TraceID, ta.SpanID}]
	if cl == nil {
		return false
	}
	if tb.Remote {
		// a is the caller's: before b if certainly before a callee hit.
		return ca+ba < cl.afterLow
	}
	// a is the callee's: b, the caller's, after it if certainly after a
	// callee hit.
	return cb-bb > cl.beforeHigh
}

// addNoOverflow adds, reporting false on overflow.
func addNoOverflow(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// satSub subtracts, saturating.
func satSub(a, b int64) int64 {
	s := a - b
	if (b < 0 && s < a) || (b > 0 && s > a) {
		if b < 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}

// CaptureGroup returns c capturing what GroupBy(names...) reads: each name
// that is an expression rather than an argument's or a local's name is
// added to Exprs, as riptrace trace --group does, so that hits carry it.
// An empty name is an error: it would group nothing.
func (c Capture) CaptureGroup(names ...string) (Capture, error) {
	exprs := slices.Clone(c.Exprs)
	for _, name := range names {
		switch {
		case strings.TrimSpace(name) == "":
			return c, errors.New("has an empty name: give the captured value that names a request, such as \"req.OrderID\"")
		case token.IsIdentifier(name) || slices.Contains(exprs, name):
			// An argument or a local, which Args and Locals capture.
		default:
			if _, err := parser.ParseExpr(name); err != nil {
				return c, fmt.Errorf("names %q, which is not a Go expression: give an argument, a local or an expression such as \"req.OrderID\"", name)
			}
			exprs = append(exprs, name)
		}
	}
	c.Exprs = exprs
	return c, nil
}

// GroupBy returns a Group function for TimelineOptions: a hit's group is
// the value of the first of names it captured, as an extra expression
// (Capture.Exprs), an argument or a local, in that order. A hit that
// captured none of them, or could not read it, has no group.
func GroupBy(names ...string) func(*Hit) string {
	return func(h *Hit) string {
		for _, name := range names {
			for _, vs := range [][]Variable{h.Exprs, h.Args, h.Locals} {
				for _, v := range vs {
					if v.Name == name && v.Unreadable == "" {
						return strings.Trim(v.Value, `"`)
					}
				}
			}
		}
		return ""
	}
}
