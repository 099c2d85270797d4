package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/fleet"
)

// simAgent stands for one agent on a machine this one cannot hold: its own
// NATS connection, speaking the agents' protocol through fleet's agent
// half as `riptrace agent` does (heartbeat with a digest, profile.get, the
// declared tracepoints watched and answered with an installed status per
// process, hits with message ids and a watermark per tracepoint). It
// attaches to nothing: its "process" and its hits are made up, shaped as
// real ones.
type simAgent struct {
	host  string
	c     *fleet.Client
	pub   *fleet.HitPublisher
	procs []fleet.Process
	hit   []byte // a hit's body, about -size bytes, for this host

	// mu guards installed.
	mu        sync.Mutex
	installed map[string]bool // tracepoints installed

}

// counts are what one publishing run made, had acknowledged, sent again
// and could not keep.
type counts struct {
	made    atomic.Int64 // hits made at the rate asked
	acked   atomic.Int64 // acknowledged: stored in the stream
	resent  atomic.Int64 // sent again after a failed send or ack
	dropped atomic.Int64 // made while the agent's buffer was full: lost
	left    atomic.Int64 // still unacknowledged when the agent gave up

	// mu guards why.
	mu  sync.Mutex
	why map[string]int // failed sends and acks by their error's text
}

// fail counts one failed send or ack, by why.
func (c *counts) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.why == nil {
		c.why = map[string]int{}
	}
	c.why[err.Error()]++
}

// reasons is the failures by their error's text.
func (c *counts) reasons() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for w, n := range c.why {
		out = append(out, fmt.Sprintf("%d× %s", n, w))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// The agent's publishing bounds (agent/publish.go): hits awaiting their
// ack at once at most, hits kept until acknowledged, and the backoff
// after a failure.
const (
	publishWindow = 512
	bufferHits    = 100_000
	retryMin      = 100 * time.Millisecond
	retryMax      = 2 * time.Second
)

// startSim connects one simulated agent and has it serve its host until
// ctx ends.
func startSim(ctx context.Context, url, host string, size int, log *slog.Logger) (*simAgent, error) {
	// Reconnecting as `riptrace agent` does: fleet's options, nothing more.
	c, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: "sim " + host})
	if err != nil {
		return nil, err
	}
	a := &simAgent{host: host, c: c, installed: map[string]bool{}}
	a.procs = []fleet.Process{
		{Pid: 4101, Exe: "/usr/local/bin/orders", Cmdline: []string{"/usr/local/bin/orders", "--listen=:8080"}, Module: "example.com/shop", MainPackage: "example.com/shop/cmd/orders", GoVersion: "go1.26.0", Revision: "3f1c2a9e8b7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f"},
		{Pid: 4102, Exe: "/usr/local/bin/payments", Cmdline: []string{"/usr/local/bin/payments"}, Module: "example.com/shop", MainPackage: "example.com/shop/cmd/payments", GoVersion: "go1.26.0", Revision: "3f1c2a9e8b7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f"},
	}
	a.hit = realisticHit(host, size)
	if a.pub, err = c.NewHitPublisher(host, 5*time.Second, 4096); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.ServeHost(host, fleet.HostHandlers{
		Profile: func(*nats.Msg) fleet.Message {
			return &fleet.Profile{Host: fleet.HostInfo{Name: host, OS: "linux", Arch: "amd64", CPUs: 8, AgentVersion: "sim"}, Processes: a.procs}
		},
		Attach:           func(*nats.Msg) fleet.Message { return &fleet.AttachReply{} },
		CreateTracepoint: func(*nats.Msg) fleet.Message { return &fleet.CreateTracepointReply{} },
		ClearTracepoint:  func(*nats.Msg) fleet.Message { return &fleet.ClearTracepointReply{} },
	}, log); err != nil {
		c.Close()
		return nil, err
	}
	specs, err := c.WatchSpecs(ctx, log)
	if err != nil {
		c.Close()
		return nil, err
	}
	go a.reconcile(ctx, specs)
	go a.beat(ctx)
	return a, nil
}

func (a *simAgent) beat(ctx context.Context) {
	refs := make([]*fleet.Process, len(a.procs))
	for i := range a.procs {
		refs[i] = &a.procs[i]
	}
	digest := fleet.ProcessDigest(refs)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		a.c.PutHeartbeat(bctx, &fleet.Heartbeat{Host: a.host, Updated: time.Now().UTC(), Every: fleet.Duration(5 * time.Second), Digest: digest})
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcile installs each declared spec that selects this host in its
// first process, as the agent would, and says so in the status bucket.
func (a *simAgent) reconcile(ctx context.Context, specs *fleet.SpecWatch) {
	for ev := range specs.Events() {
		for _, e := range ev.Entries {
			if e.Deleted {
				a.mu.Lock()
				had := a.installed[e.Key]
				delete(a.installed, e.Key)
				a.mu.Unlock()
				if had {
					a.c.WithdrawStatus(ctx, fleet.StatusKey(e.Key, a.host, a.procs[0].Pid))
				}
				continue
			}
			var s fleet.Spec
			if err := fleet.Decode(e.Value, "tracepoint spec", &s); err != nil {
				continue
			}
			if !s.Selector.MatchHost(a.host) {
				continue
			}
			phases.note(s.ID, &phases.delivered)
			a.mu.Lock()
			a.installed[s.ID] = true
			a.mu.Unlock()
			p := &a.procs[0]
			a.c.PutStatus(ctx, &fleet.Status{Tracepoint: s.ID, Host: a.host, Pid: p.Pid, Process: p.Ref(), State: fleet.StateInstalled, Updated: time.Now().UTC(),
				Placement: &fleet.Placement{Pid: p.Pid, File: s.Location.Path, Line: s.Location.Line, Function: "main.handle", Backend: "ebpf"}})
			phases.note(s.ID, &phases.stored)
		}
	}
}

// phases is when the last agent received each declared tracepoint, and
// when the last agent's installed status was stored: where the time from
// declaring to every agent installed goes.
var phases = declPhases{delivered: map[string]time.Time{}, stored: map[string]time.Time{}}

type declPhases struct {
	// mu guards the maps: the latest time per tracepoint.
	mu                sync.Mutex
	delivered, stored map[string]time.Time
}

func (p *declPhases) note(id string, m *map[string]time.Time) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.After((*m)[id]) {
		(*m)[id] = now
	}
}

// of returns the latest delivery and store of id.
func (p *declPhases) of(id string) (delivered, stored time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delivered[id], p.stored[id]
}

// publish makes rate hits a second of tracepoint tp until ctx ends, and
// sends them as the agent does (agent/publish.go): each with its message
// id; at most an AckWindow awaiting their ack, the others kept in a
// buffer of bufferHits (a hit made while it is full is dropped, and
// counted so); after a failed send or ack, the hits not acknowledged are
// sent again in order under the same ids, which the stream stores once,
// after a backoff. A watermark for tp follows every 50 ms. Once ctx ends
// it sends what it kept, for up to drainFor. It returns how many hits it
// made: at rate until ctx's deadline, if it has one.
func (a *simAgent) publish(ctx context.Context, tp string, rate int, drainFor time.Duration, cnt *counts) (made int64) {
	if rate <= 0 {
		return 0
	}
	body := a.hit
	if tp != "load" {
		var h fleet.Hit
		fleet.Decode(a.hit, "hit", &h)
		h.Tracepoint = tp
		body = fleet.Encode(&h)
	}
	type flight struct {
		f   jetstream.PubAckFuture
		msg *nats.Msg
	}
	isMark := func(m *nats.Msg) bool { return strings.Contains(m.Subject, ".marks.") }
	var (
		inflight []flight
		// retry are the hits to send again, before queue, the others kept.
		retry, queue []*nats.Msg
		window       = fleet.NewAckWindow(publishWindow)
		backoff      = retryMin
		retryAt      time.Time
		stopping     <-chan time.Time // once ctx ended: when to give up
	)
	fail := func(err error) {
		cnt.fail(err)
		if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			window.TimedOut()
		}
		var again []*nats.Msg
		for _, fl := range inflight {
			select {
			case <-fl.f.Ok():
				if !isMark(fl.msg) {
					cnt.acked.Add(1)
				}
			default:
				again = append(again, fl.msg)
			}
		}
		cnt.resent.Add(int64(len(again)))
		retry, inflight = append(again, retry...), inflight[:0]
		retryAt, backoff = time.Now().Add(backoff), min(2*backoff, retryMax)
	}
	// Hits are made as time passes, not per tick: a tick this process
	// was too busy to take makes its hits at the next. A tick of 50 ms
	// (5 hits at 100 a second) rather than 10 ms spares the simulator a
	// thousand agents' 80k timer wakeups a second, which took the CPU
	// the acks needed.
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	n := 0
	start := time.Now()
	lastMark := start
	done := ctx.Done()
	end, hasEnd := ctx.Deadline()
	for {
		if stopping == nil {
			until := time.Now()
			if hasEnd && until.After(end) {
				until = end
			}
			for due := int(float64(rate) * until.Sub(start).Seconds()); n < due; {
				n++
				cnt.made.Add(1)
				if len(retry)+len(queue) >= bufferHits {
					cnt.dropped.Add(1)
					continue
				}
				queue = append(queue, a.pub.Msg(tp, body, a.host+"-"+tp+"-"+strconv.Itoa(n)))
			}
			if time.Since(lastMark) >= 50*time.Millisecond {
				lastMark = time.Now()
				w := fleet.Watermark{Host: a.host, Time: time.Now().UnixNano(), Lag: fleet.Duration(150 * time.Millisecond)}
				queue = append(queue, a.pub.MarkMsg(tp, fleet.Encode(&w), a.host+"-"+tp+"-w"+strconv.Itoa(n)))
			}
		}
		for !time.Now().Before(retryAt) && len(inflight) < window.Size() && len(retry)+len(queue) > 0 {
			from := &queue
			if len(retry) > 0 {
				from = &retry
			}
			m := (*from)[0]
			f, err := a.pub.Publish(m)
			if err != nil {
				fail(err)
				break
			}
			inflight = append(inflight, flight{f, m})
			*from = (*from)[1:]
		}
		if stopping != nil && len(inflight)+len(retry)+len(queue) == 0 {
			return int64(n)
		}
		var (
			okCh  <-chan *jetstream.PubAck
			errCh <-chan error
		)
		if len(inflight) > 0 {
			okCh, errCh = inflight[0].f.Ok(), inflight[0].f.Err()
		}
		select {
		case <-done:
			done, stopping = nil, time.After(drainFor)
		case <-stopping:
			for _, ms := range [][]*nats.Msg{retry, queue} {
				for _, m := range ms {
					if !isMark(m) {
						cnt.left.Add(1)
					}
				}
			}
			for _, fl := range inflight {
				if !isMark(fl.msg) {
					cnt.left.Add(1)
				}
			}
			return int64(n)
		case <-t.C:
		case <-okCh:
			if !isMark(inflight[0].msg) {
				cnt.acked.Add(1)
			}
			inflight = inflight[1:]
			window.Acked()
			backoff = retryMin
		case err := <-errCh:
			fail(err)
		}
	}
}

// realisticHit is a hit shaped as the eBPF backend's of an HTTP handler
// (arguments, locals, a 4-frame stack), padded with a captured string to
// about size bytes.
func realisticHit(host string, size int) []byte {
	h := fleet.Hit{
		Tracepoint: "load", Host: host, Pid: 4101,
		Process:   fleet.ProcessRef{Exe: "orders", Module: "example.com/shop", MainPackage: "example.com/shop/cmd/orders", Revision: "3f1c2a9e8b7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f"},
		Goroutine: 4711, Time: time.Now().UnixNano(),
		File: "internal/orders/handler.go", Line: 88, Function: "example.com/shop/internal/orders.(*Handler).Checkout",
		Args: []fleet.Variable{
			{Name: "h", Type: "*orders.Handler", Value: "0xc000124000"},
			{Name: "ctx", Type: "context.Context", Value: "context.Context(*context.valueCtx) 0xc0001a2b40"},
			{Name: "req", Type: "*orders.CheckoutRequest", Children: []fleet.Variable{
				{Name: "OrderID", Type: "string", Value: `"ord-20261205-000417"`},
				{Name: "Amount", Type: "int64", Value: "4999"},
				{Name: "Currency", Type: "string", Value: `"EUR"`},
			}},
		},
		Locals: []fleet.Variable{{Name: "total", Type: "int64", Value: "5248"}, {Name: "err", Type: "error", Value: "nil"}},
	}
	for i := range 4 {
		h.Stack = append(h.Stack, fleet.Frame{Function: fmt.Sprintf("orders.step%d", i), File: "orders/handler.go", Line: 80 + i})
	}
	for len(h.Stack) > 0 && len(fleet.Encode(&h)) > size {
		h.Stack = h.Stack[:len(h.Stack)-1]
	}
	base := len(fleet.Encode(&h))
	// The padding's own variable costs about 50 bytes of JSON.
	if pad := size - base - 50; pad > 0 {
		h.Locals = append(h.Locals, fleet.Variable{Name: "note", Type: "string", Value: strconv.Quote(strings.Repeat("x", pad))})
	}
	return fleet.Encode(&h)
}
