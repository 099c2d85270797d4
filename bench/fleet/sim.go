package main

import (
	"context"
	"fmt"
	"log/slog"
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

// counts are what one publishing run sent, had acknowledged, and failed
// to send.
type counts struct {
	published, acked, failed atomic.Int64
}

// startSim connects one simulated agent and has it serve its host until
// ctx ends.
func startSim(ctx context.Context, url, host string, size int, log *slog.Logger) (*simAgent, error) {
	c, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: "sim " + host, NATS: []nats.Option{nats.ReconnectWait(250 * time.Millisecond), nats.ReconnectJitter(250*time.Millisecond, time.Second)}})
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
			a.mu.Lock()
			a.installed[s.ID] = true
			a.mu.Unlock()
			p := &a.procs[0]
			a.c.PutStatus(ctx, &fleet.Status{Tracepoint: s.ID, Host: a.host, Pid: p.Pid, Process: p.Ref(), State: fleet.StateInstalled, Updated: time.Now().UTC(),
				Placement: &fleet.Placement{Pid: p.Pid, File: s.Location.Path, Line: s.Location.Line, Function: "main.handle", Backend: "ebpf"}})
		}
	}
}

// publish sends rate hits a second of tracepoint tp, each with its message
// id, and a watermark for tp every 50 ms, until ctx ends, then waits up to
// 30 s for the acks of what it sent. Acks are awaited by a goroutine of
// their own, in order, so that sending never waits for the stream's
// round trip: what is counted acknowledged is stored.
func (a *simAgent) publish(ctx context.Context, tp string, rate int, cnt *counts) {
	if rate <= 0 {
		return
	}
	pending := make(chan jetstream.PubAckFuture, 4096)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		timeout := time.After(time.Hour)
		for f := range pending {
			select {
			case <-f.Ok():
				cnt.acked.Add(1)
			case <-f.Err():
				cnt.failed.Add(1)
			case <-timeout:
				cnt.failed.Add(1)
			}
		}
	}()
	defer func() {
		close(pending)
		<-drained
	}()
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	n := 0
	carry := 0.0
	lastMark := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		carry += float64(rate) * tick.Seconds()
		k := int(carry)
		carry -= float64(k)
		for range k {
			n++
			f, err := a.pub.Publish(a.pub.Msg(tp, a.hit, a.host+"-"+tp+"-"+strconv.Itoa(n)))
			if err != nil {
				cnt.failed.Add(1)
				continue
			}
			cnt.published.Add(1)
			pending <- f
		}
		if time.Since(lastMark) >= 50*time.Millisecond {
			lastMark = time.Now()
			w := fleet.Watermark{Host: a.host, Time: time.Now().UnixNano(), Lag: fleet.Duration(150 * time.Millisecond)}
			a.pub.Publish(a.pub.MarkMsg(tp, fleet.Encode(&w), a.host+"-"+tp+"-w"+strconv.Itoa(n)))
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
