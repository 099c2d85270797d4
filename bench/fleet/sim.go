package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
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
	procs []fleet.Process
	hit   fleet.Hit // a hit of about -size bytes once encoded, for this host

	// mu guards installed.
	mu        sync.Mutex
	installed map[string]bool // tracepoints installed

}

// counts are what one publishing run made, had acknowledged, sent again
// and could not keep.
type counts struct {
	made    atomic.Int64 // hits made at the rate asked
	acked   atomic.Int64 // acknowledged: stored in the stream
	dropped atomic.Int64 // made while the agent's buffer was full: lost
	left    atomic.Int64 // still unacknowledged when the agent gave up

	// Summed from each agent's fleet.OutboxStats once it is done.
	sent, resent, repeated, timedOut, inProcess, tooMany, batches, batched, batchBytes atomic.Int64
	// Summed when the run ends: the agents' windows and ack times.
	windows, ackTime atomic.Int64

	// mu guards why.
	mu  sync.Mutex
	why map[string]int // failed sends and acks by their error's text
}

// add sums one agent's outbox's counts.
func (c *counts) add(st fleet.OutboxStats) {
	c.sent.Add(st.Sent)
	c.resent.Add(st.Resent)
	c.repeated.Add(st.Repeated)
	c.timedOut.Add(st.TimedOut)
	c.inProcess.Add(st.InProcess)
	c.tooMany.Add(st.TooMany)
	c.batches.Add(st.Batches)
	c.batched.Add(st.Batched)
	c.batchBytes.Add(st.BatchBytes)
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
	a.hit = fleettest.RealisticHit("load", host, 417, size)
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

// publish makes rate hits a second of tracepoint tp at line of the
// agent's file until ctx ends, and sends them as the agent does, through a fleet.Outbox of its own: each
// with its message id, kept until acknowledged up to the agent's default
// bounds (a hit made while the buffer is full is dropped, and counted
// so), fewer in flight while the stream is congested, only the hits whose
// ack failed sent again. A watermark for tp follows every 50 ms. Once ctx
// ends it sends what it kept, for up to drainFor, and counts what is left
// then as the agent does when it stops. It returns how many hits it made:
// at rate until ctx's deadline, if it has one.
func (a *simAgent) publish(ctx context.Context, tp string, line, rate int, drainFor time.Duration, cnt *counts) (made int64) {
	if rate <= 0 {
		return 0
	}
	h := a.hit
	h.Tracepoint, h.Line = tp, line
	hits, err := newHitMaker(&h)
	if err != nil {
		cnt.fail(err)
		return 0
	}
	out, err := fleet.NewOutbox(a.c, fleet.OutboxConfig[struct{}]{
		Host: a.host, IDBase: fmt.Sprintf("%s-%s-%d-", a.host, tp, time.Now().UnixNano()),
		Stored: func(struct{}) { cnt.acked.Add(1) },
		Lost:   func(struct{}, error) { cnt.left.Add(1) },
		Failed: cnt.fail,
	})
	if err != nil {
		cnt.fail(err)
		return 0
	}
	runCtx, stop := context.WithCancel(context.Background())
	go out.Run(runCtx)
	defer func() {
		stop()
		<-out.Done()
		cnt.add(out.Stats())
	}()
	// Hits are made as time passes, not per tick: a tick this process
	// was too busy to take makes its hits at the next. A tick of 50 ms
	// (5 hits at 100 a second) rather than 10 ms spares the simulator a
	// thousand agents' 80k timer wakeups a second, which took the CPU
	// the acks needed.
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	n := 0
	start := time.Now()
	end, hasEnd := ctx.Deadline()
	for {
		until := time.Now()
		if hasEnd && until.After(end) {
			until = end
		}
		for due := int(float64(rate) * until.Sub(start).Seconds()); n < due; n++ {
			cnt.made.Add(1)
			if !out.Offer(tp, hits.make(n), struct{}{}) {
				cnt.dropped.Add(1)
			}
		}
		w := fleet.Watermark{Host: a.host, Time: time.Now().UnixNano(), Lag: fleet.Duration(150 * time.Millisecond)}
		out.OfferMarks([]string{tp}, fleet.Encode(&w))
		select {
		case <-ctx.Done():
			st := out.Stats()
			cnt.windows.Add(int64(st.Window))
			cnt.ackTime.Add(int64(st.AckTime))
			dctx, cancel := context.WithTimeout(context.Background(), drainFor)
			out.Flush(dctx)
			cancel()
			return int64(n)
		case <-t.C:
		}
	}
}

// hitMaker makes an agent's hits from one encoded hit, each with its own
// capture time, goroutine, order id and total written over the first's
// digits: copies of one hit would pack into batches far smaller than real
// hits do, whose values differ from one to the next.
type hitMaker struct {
	body []byte
	// Where the digits of each varying value start, and how many.
	time, goroutine, order, total [2]int
}

func newHitMaker(h *fleet.Hit) (*hitMaker, error) {
	c := *h
	c.Time, c.Goroutine = time.Now().UnixNano(), 1000
	m := &hitMaker{body: fleet.Encode(&c)}
	find := func(after string, n int) [2]int {
		i := bytes.Index(m.body, []byte(after))
		if i < 0 {
			return [2]int{-1, 0}
		}
		return [2]int{i + len(after), n}
	}
	m.time = find(`"time":`, 19)
	m.goroutine = find(`"goroutine":`, 4)
	m.order = find(`"ord-20261205-`, 6)
	m.total = find(`"name":"total","type":"int64","value":"`, 4)
	for _, at := range [][2]int{m.time, m.goroutine, m.order, m.total} {
		if at[0] < 0 {
			return nil, fmt.Errorf("making the simulated hits: the realistic hit changed shape, and its values cannot be varied: %s", m.body)
		}
	}
	return m, nil
}

// make returns the agent's nth hit, captured now.
func (m *hitMaker) make(n int) []byte {
	b := bytes.Clone(m.body)
	digits(b, m.time, uint64(time.Now().UnixNano()))
	// Goroutine ids and totals of four digits, not starting with 0.
	digits(b, m.goroutine, 1000+uint64(n*7919)%9000)
	digits(b, m.order, uint64(n))
	digits(b, m.total, 1000+uint64(n*104729)%9000)
	return b
}

// digits writes v's last at[1] decimal digits at b[at[0]:].
func digits(b []byte, at [2]int, v uint64) {
	for i := at[0] + at[1] - 1; i >= at[0]; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}
