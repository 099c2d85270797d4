package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file is the agent's half of the protocol: what an agent serving one
// host does on the fleet, over the same subjects and buckets the clients'
// half (client.go) reads.

// HostHandlers answer the requests addressed to one host: each returns the
// reply to the request it is given.
type HostHandlers struct {
	Profile          func(*nats.Msg) Message
	Attach           func(*nats.Msg) Message
	CreateTracepoint func(*nats.Msg) Message
	ClearTracepoint  func(*nats.Msg) Message
}

// ServeHost answers the requests addressed to host with h until stop is
// called. It returns once the server has the subscriptions; an error if
// they cannot be made or the server refused them, so that an agent whose
// NATS user may not serve this host stops at once instead of serving
// nothing. A handler that panics is answered with an internal error, and
// logged on log.
func (c *Client) ServeHost(host string, h HostHandlers, log *slog.Logger) (stop func(), err error) {
	handlers := []struct {
		subject string
		handle  func(*nats.Msg) Message
	}{
		{c.subj.ProfileGet(host), h.Profile},
		{c.subj.Attach(host), h.Attach},
		{c.subj.CreateTracepoint(host), h.CreateTracepoint},
		{c.subj.ClearTracepoint(host), h.ClearTracepoint},
	}
	var subs []*nats.Subscription
	stop = func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}
	for _, sh := range handlers {
		s, err := c.nc.Subscribe(sh.subject, serveRequest(sh.handle, log))
		if err != nil {
			stop()
			return nil, fmt.Errorf("subscribing to %s: %w", sh.subject, err)
		}
		subs = append(subs, s)
	}
	if err := c.nc.FlushTimeout(10 * time.Second); err != nil {
		stop()
		return nil, fmt.Errorf("flushing subscriptions: %w", err)
	}
	if err := c.Refused(); err != nil {
		stop()
		return nil, fmt.Errorf("serving host %s: %w", host, err)
	}
	return stop, nil
}

// serveRequest wraps a request handler: it recovers panics into an error
// reply and sends whatever the handler returns.
func serveRequest(h func(*nats.Msg) Message, log *slog.Logger) nats.MsgHandler {
	return func(m *nats.Msg) {
		var reply Message
		func() {
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panic", "subject", m.Subject, "panic", r, "stack", string(debug.Stack()))
					reply = &ErrorReply{Error: Errorf(CodeInternal, "internal error handling %s: %v (please report it)", m.Subject, r)}
				}
			}()
			reply = h(m)
		}()
		if m.Reply == "" {
			return
		}
		if err := m.Respond(Encode(reply)); err != nil {
			log.Warn("replying", "subject", m.Subject, "err", err)
		}
	}
}

// SpecEntry is one key of the tracepoint bucket as a watcher sees it.
type SpecEntry struct {
	Key     string
	Value   []byte // an encoded Spec, as declared; nil when deleted
	Deleted bool
}

// SpecEvent is what a SpecWatch delivers: one entry that changed, or with
// Resync every entry of the bucket, the keys not among them being gone.
type SpecEvent struct {
	Resync  bool
	Entries []SpecEntry
}

// SpecWatch follows the bucket of declared tracepoints through NATS
// outages. Its first event is a resync with the bucket's entries. After a
// reconnect (the server may be a restarted one that lost the watcher's
// consumer) or a watcher that stopped, it watches again and delivers a
// resync, so that what was removed while the agent was cut off goes and
// what was added comes.
//
// Its one goroutine, run, owns the watcher.
type SpecWatch struct {
	events chan SpecEvent
	cancel context.CancelFunc
	done   chan struct{}
	kv     jetstream.KeyValue // the bucket watched
	what   string             // its name in logs
}

// WatchSpecs starts watching the declared tracepoints until ctx ends or
// Stop is called. log receives the rewatches.
func (c *Client) WatchSpecs(ctx context.Context, log *slog.Logger) (*SpecWatch, error) {
	return c.watchBucket(ctx, c.tps, "tracepoint bucket", log)
}

// watchBucket watches every key of kv as WatchSpecs does the tracepoint
// bucket; what names the bucket in errors and logs.
func (c *Client) watchBucket(ctx context.Context, kv jetstream.KeyValue, what string, log *slog.Logger) (*SpecWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	// Listening before the first watch, so that no reconnect goes unseen.
	reconnected := c.nc.StatusChanged(nats.CONNECTED)
	w, err := kv.WatchAll(ctx)
	if err != nil {
		c.nc.RemoveStatusListener(reconnected)
		cancel()
		return nil, fmt.Errorf("watching the %s: %w", what, err)
	}
	sw := &SpecWatch{events: make(chan SpecEvent), cancel: cancel, done: make(chan struct{}), kv: kv, what: what}
	go sw.run(ctx, c, w, reconnected, log)
	return sw, nil
}

// Events delivers the changes. It is closed once the watch stops.
func (sw *SpecWatch) Events() <-chan SpecEvent { return sw.events }

// Stop stops watching and waits for the watch's goroutine.
func (sw *SpecWatch) Stop() {
	sw.cancel()
	<-sw.done
}

// rewatchEvery is how soon a watch that could not be made is tried again.
const rewatchEvery = time.Second

func (sw *SpecWatch) run(ctx context.Context, c *Client, w jetstream.KeyWatcher, reconnected chan nats.Status, log *slog.Logger) {
	defer close(sw.done)
	defer close(sw.events)
	defer c.nc.RemoveStatusListener(reconnected)
	defer func() { w.Stop() }()
	send := func(ev SpecEvent) bool {
		select {
		case sw.events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	retry := time.NewTimer(rewatchEvery)
	retry.Stop()
	defer retry.Stop()
	updates := w.Updates()
	var initial []SpecEntry // a new watcher's current values
	resyncing := true       // until the end of them
	rewatch := false
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				// Its consumer is gone (the server lost it): watch again.
				log.Warn("the " + sw.what + " watcher stopped; watching again")
				updates, rewatch = nil, true
				break
			}
			switch {
			case e == nil && resyncing:
				if !send(SpecEvent{Resync: true, Entries: initial}) {
					return
				}
				initial, resyncing = nil, false
			case e == nil:
			case resyncing:
				initial = append(initial, specEntry(e))
			default:
				if !send(SpecEvent{Entries: []SpecEntry{specEntry(e)}}) {
					return
				}
			}
		case <-reconnected:
			log.Info("reconnected to NATS", "nats", c.nc.ConnectedUrlRedacted())
			rewatch = true
		case <-retry.C:
		}
		if rewatch {
			nw, err := sw.kv.WatchAll(ctx)
			if err != nil {
				log.Warn("watching the "+sw.what+" again; retrying", "err", err)
				retry.Reset(rewatchEvery)
				continue
			}
			w.Stop()
			w, updates = nw, nw.Updates()
			rewatch, resyncing, initial = false, true, nil
		}
	}
}

func specEntry(e jetstream.KeyValueEntry) SpecEntry {
	if e.Operation() != jetstream.KeyValuePut {
		return SpecEntry{Key: e.Key(), Deleted: true}
	}
	return SpecEntry{Key: e.Key(), Value: e.Value()}
}

// PutStatus writes an agent's status of one tracepoint in one process,
// under StatusKey.
func (c *Client) PutStatus(ctx context.Context, st *Status) error {
	_, err := c.status.Put(ctx, StatusKey(st.Tracepoint, st.Host, st.Pid), Encode(st))
	return err
}

// WithdrawStatus deletes the status entry key (a StatusKey).
func (c *Client) WithdrawStatus(ctx context.Context, key string) error {
	return c.status.Delete(ctx, key)
}

// PutHeartbeat writes the heartbeat of hb.Host: clients list a host while
// its heartbeat is fresh.
func (c *Client) PutHeartbeat(ctx context.Context, hb *Heartbeat) error {
	_, err := c.hosts.Put(ctx, hb.Host, Encode(hb))
	return err
}

// WithdrawHeartbeat deletes host's heartbeat: clients stop listing it.
func (c *Client) WithdrawHeartbeat(ctx context.Context, host string) error {
	return c.hosts.Delete(ctx, host)
}

// Connected reports whether the connection is up now.
func (c *Client) Connected() bool { return c.nc.IsConnected() }

// ConnectedURL is the server the connection is up to, with any password
// redacted; "" while it is down.
func (c *Client) ConnectedURL() string { return c.nc.ConnectedUrlRedacted() }

// Probe makes sure a connection that looks up still reaches the server,
// and reconnects if not: a cut link leaves TCP open and silent for minutes
// (nats.go pings every two minutes), and a reconnect is what brings the
// client back as soon as the link returns. The error says it reconnects.
func (c *Client) Probe() error {
	if !c.nc.IsConnected() {
		return nil
	}
	if err := c.nc.FlushTimeout(2 * time.Second); err != nil {
		c.nc.ForceReconnect()
		return fmt.Errorf("NATS does not answer over a connection that looks up; reconnecting: %w", err)
	}
	return nil
}

// HitPublisher publishes one host's hits to the hit stream asynchronously:
// the agent's publisher keeps them in order and through outages.
type HitPublisher struct {
	js   jetstream.JetStream
	subj Subjects
	host string
}

// NewHitPublisher returns the publisher of host's hits: at most maxPending
// unacknowledged at once, each acknowledged within ackTimeout.
func (c *Client) NewHitPublisher(host string, ackTimeout time.Duration, maxPending int) (*HitPublisher, error) {
	opts := []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncTimeout(ackTimeout),
		jetstream.WithPublishAsyncMaxPending(maxPending),
	}
	js, err := jetstream.New(c.nc, opts...)
	if c.domain != "" {
		js, err = jetstream.NewWithDomain(c.nc, c.domain, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("opening JetStream for publishing hits: %w", err)
	}
	return &HitPublisher{js: js, subj: c.subj, host: host}, nil
}

// Msg is the message of one encoded hit of tracepoint; id is its message
// id, by which the stream stores a hit sent twice once.
func (p *HitPublisher) Msg(tracepoint string, data []byte, id string) *nats.Msg {
	return streamMsg(p.subj.Trace(p.host, tracepoint), data, id)
}

// MarkMsg is the message of one encoded watermark for tracepoint,
// published among its hits (see Timeline).
func (p *HitPublisher) MarkMsg(tracepoint string, data []byte, id string) *nats.Msg {
	return streamMsg(p.subj.Watermark(p.host, tracepoint), data, id)
}

// BatchMsg is the message of several encoded hits of tracepoint in one
// HitBatch (EncodeHitBatch), under one message id, as an agent of
// BatchVersion sends them.
func (p *HitPublisher) BatchMsg(tracepoint string, hits [][]byte, id string) *nats.Msg {
	return p.batchMsg(tracepoint, EncodeHitBatch(hits), len(hits), id)
}

// PackedBatchMsg is BatchMsg packed (PackHitBatch), as an Outbox sends a
// batch.
func (p *HitPublisher) PackedBatchMsg(tracepoint string, hits [][]byte, id string) *nats.Msg {
	return p.batchMsg(tracepoint, PackHitBatch(hits), len(hits), id)
}

func (p *HitPublisher) batchMsg(tracepoint string, data []byte, n int, id string) *nats.Msg {
	msg := streamMsg(p.subj.Trace(p.host, tracepoint), data, id)
	msg.Header.Set(HitsHeader, strconv.Itoa(n))
	return msg
}

func streamMsg(subject string, data []byte, id string) *nats.Msg {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	return msg
}

// Publish sends msg (made by Msg or MarkMsg) without waiting for its ack and without
// retries: the caller retries in order.
func (p *HitPublisher) Publish(msg *nats.Msg) (jetstream.PubAckFuture, error) {
	return p.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
}

// PublishHit stores one hit in the hit stream, on the subject of h.Host,
// and waits for the stream's ack. Agents publish through a HitPublisher;
// this is for tools and tests that bring hits of their own.
func (c *Client) PublishHit(ctx context.Context, h *Hit) error {
	if _, err := c.js.Publish(ctx, c.subj.Trace(h.Host, h.Tracepoint), Encode(h)); err != nil {
		return fmt.Errorf("publishing a hit of host %s: %w", h.Host, err)
	}
	return nil
}
