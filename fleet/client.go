package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultURL is where every command looks for NATS unless told otherwise.
const DefaultURL = "nats://127.0.0.1:4222"

// ClientOptions configure Connect.
type ClientOptions struct {
	Prefix      string        // subject prefix; DefaultPrefix if empty
	Name        string        // connection name shown by the server
	Credentials Credentials   // as whom, and how the server is trusted
	NATS        []nats.Option // more options, after those of Credentials
	// Replicas is the replication of the hit stream and buckets if this
	// client creates them; 0 leaves what exists, and creates them at 1.
	// An existing stream or bucket is scaled up to it, never down.
	Replicas int
	// Domain is the JetStream domain of the hub, for a client or agent
	// behind a leaf node (see ServerConfig.Domain); empty takes
	// $RIPTRACE_JS_DOMAIN.
	Domain string
}

// Client is the fleet API used by the CLI, the debug adapter and the language
// server. It is safe for concurrent use.
type Client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	domain string // the JetStream domain, if any
	subj   Subjects
	tps    jetstream.KeyValue
	status jetstream.KeyValue
	hosts  jetstream.KeyValue
	perms  *permWatch // explains permission violations (auth.go)
}

// Connect dials NATS and makes sure the hit stream and buckets exist.
func Connect(ctx context.Context, url string, opts ClientOptions) (*Client, error) {
	// No reconnect buffer: a message published while the connection is
	// down fails at once instead of waiting in nats.go's buffer, from which
	// it would overtake what the caller sends again in order (the agent
	// keeps hits itself through an outage, and resends them in order).
	login, err := opts.Credentials.options()
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", url, err)
	}
	// A dial of 10 s, not nats.go's 2: on a loaded host (a stressed CI
	// run at load 60 saw it) the server's accept can take longer than 2 s
	// even over loopback, and a refused or unknown server fails at once
	// either way.
	nopts := append([]nats.Option{nats.Name(opts.Name), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1), nats.Timeout(10 * time.Second)}, login...)
	nopts = append(nopts, opts.NATS...)
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, connectError(url, nopts, err)
	}
	if opts.Domain == "" {
		opts.Domain = os.Getenv("RIPTRACE_JS_DOMAIN")
	}
	c, err := newClient(ctx, nc, opts.Prefix, opts.Replicas, opts.Domain)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// NewClient wraps an existing connection; Close does not close nc.
func NewClient(ctx context.Context, nc *nats.Conn, prefix string) (*Client, error) {
	return newClient(ctx, nc, prefix, 0, "")
}

func newClient(ctx context.Context, nc *nats.Conn, prefix string, replicas int, domain string) (*Client, error) {
	js, err := jetstream.New(nc)
	if domain != "" {
		js, err = jetstream.NewWithDomain(nc, domain)
	}
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	subj := NewSubjects(prefix)
	perms := watchPermissions(nc, subj)
	tps, status, hosts, err := openResources(ctx, js, subj, perms, replicas)
	if err != nil {
		return nil, err
	}
	return &Client{nc: nc, js: js, domain: domain, subj: subj, tps: tps, status: status, hosts: hosts, perms: perms}, nil
}

// Subjects returns the subjects this client uses.
func (c *Client) Subjects() Subjects { return c.subj }

// Close closes the connection.
func (c *Client) Close() { c.nc.Close() }

// request sends req to subject and strictly decodes the reply into reply,
// whose embedded error (if any) is returned as an *Error.
func (c *Client) request(ctx context.Context, host, subject string, req Message, reply interface{ replyError() *Error }, what string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	ctx, release := c.perms.guard(ctx, subject, c.perms.replies())
	defer release()
	msg, err := c.nc.RequestWithContext(ctx, subject, Encode(req))
	if err = denied(ctx, err); err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("no agent answers for host %q: check the name with `riptrace hosts`, and that its agent runs and reaches this NATS server", host)
		}
		return fmt.Errorf("asking host %q (%s): %w", host, subject, err)
	}
	if err := Decode(msg.Data, what, reply); err != nil {
		return fmt.Errorf("reading the reply of host %q: %w", host, err)
	}
	if e := reply.replyError(); e != nil {
		return e
	}
	return nil
}

func (p *Profile) replyError() *Error               { return p.Error }
func (r *AttachReply) replyError() *Error           { return r.Error }
func (r *CreateTracepointReply) replyError() *Error { return r.Error }
func (r *ClearTracepointReply) replyError() *Error  { return r.Error }

// Profile asks one host for its facts and Go processes.
func (c *Client) Profile(ctx context.Context, host string) (*Profile, error) {
	var p Profile
	if err := c.request(ctx, host, c.subj.ProfileGet(host), &Request{}, &p, "profile"); err != nil {
		return nil, err
	}
	return &p, nil
}

// ProfileFiles is Profile with, for each process, the source files its
// DWARF names (read from the executable; the process is not touched).
func (c *Client) ProfileFiles(ctx context.Context, host string) (*Profile, error) {
	var p Profile
	if err := c.request(ctx, host, c.subj.ProfileGet(host), &Request{Files: true}, &p, "profile"); err != nil {
		return nil, err
	}
	return &p, nil
}

// Fingerprint is Profile with, on the first process of each executable
// that carries no vcs.revision, the Fingerprint of file (Module and Path
// are read) as its DWARF says; the processes are not touched.
func (c *Client) Fingerprint(ctx context.Context, host string, file Location) (*Profile, error) {
	var p Profile
	req := &Request{Fingerprint: &Location{Module: file.Module, Path: file.Path, Line: 1}}
	if err := c.request(ctx, host, c.subj.ProfileGet(host), req, &p, "profile"); err != nil {
		return nil, err
	}
	return &p, nil
}

// Attach asks host to attach to pid.
func (c *Client) Attach(ctx context.Context, host string, pid int) (*AttachReply, error) {
	var r AttachReply
	if err := c.request(ctx, host, c.subj.Attach(host), &AttachRequest{Pid: pid}, &r, "attach reply"); err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateTracepoint installs spec on host's matching processes right away and
// returns where it went. Use Declare for fleet-wide, reconciled tracepoints.
func (c *Client) CreateTracepoint(ctx context.Context, host string, spec *Spec) (*CreateTracepointReply, error) {
	if err := spec.ValidateAt(time.Now()); err != nil {
		return nil, err
	}
	var r CreateTracepointReply
	if err := c.request(ctx, host, c.subj.CreateTracepoint(host), spec, &r, "createTracepoint reply"); err != nil {
		return nil, err
	}
	return &r, nil
}

// ClearTracepoint removes a tracepoint created with CreateTracepoint.
func (c *Client) ClearTracepoint(ctx context.Context, host, id string) error {
	var r ClearTracepointReply
	return c.request(ctx, host, c.subj.ClearTracepoint(host), &ClearTracepointRequest{ID: id}, &r, "clearTracepoint reply")
}

// HostEntry is one agent as seen by a client.
type HostEntry struct {
	Name     string    `json:"name"`
	LastSeen time.Time `json:"lastSeen"`
	Gone     bool      `json:"gone"`
	Profile  *Profile  `json:"profile,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Hosts lists every agent that sent a heartbeat within the host bucket's
// TTL, asking each live one for its profile: for a one-off listing. A
// client that lists hosts again and again, or needs only some, keeps a
// HostWatch instead. An agent whose heartbeat is
// older than three periods, or that does not answer, is marked Gone.
func (c *Client) Hosts(ctx context.Context) ([]HostEntry, error) {
	gctx, release := c.perms.guard(ctx, c.perms.jsPatterns()...)
	defer release()
	lister, err := c.hosts.ListKeys(gctx)
	if err != nil {
		return nil, fmt.Errorf("listing hosts: %w", denied(gctx, err))
	}
	var entries []HostEntry
	for key := range lister.Keys() {
		e, err := c.hosts.Get(ctx, key)
		if err != nil {
			continue // expired between list and get
		}
		var hb Heartbeat
		if err := Decode(e.Value(), "heartbeat", &hb); err != nil {
			entries = append(entries, HostEntry{Name: key, Gone: true, Error: err.Error()})
			continue
		}
		stale := time.Since(hb.Updated) > staleAfter*time.Duration(hb.Every)
		// The key is the host: only its agent may write it. The body says
		// whatever its writer put there.
		entry := HostEntry{Name: key, LastSeen: hb.Updated, Gone: stale}
		if hb.Host != key {
			entry.Error = hostMismatch(key, hb.Host)
		}
		entries = append(entries, entry)
	}
	var wg sync.WaitGroup
	for i := range entries {
		if entries[i].Gone {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			p, err := c.Profile(ctx, entries[i].Name)
			if err != nil {
				entries[i].Gone = true
				entries[i].Error = strings.TrimPrefix(entries[i].Error+"; "+err.Error(), "; ")
				return
			}
			entries[i].Profile = p
		})
	}
	wg.Wait()
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

// Declare puts spec into the desired state; every agent whose processes
// match installs it, now and whenever a matching process appears.
func (c *Client) Declare(ctx context.Context, spec *Spec) error {
	if err := spec.ValidateAt(time.Now()); err != nil {
		return err
	}
	if spec.Created.IsZero() {
		spec.Created = time.Now().UTC()
	}
	ctx, release := c.perms.guard(ctx, c.perms.jsPatterns("$KV.>")...)
	defer release()
	if _, err := c.tps.Put(ctx, spec.ID, Encode(spec)); err != nil {
		return fmt.Errorf("declaring tracepoint %s: %w", spec.ID, denied(ctx, err))
	}
	return nil
}

// Remove deletes a declared tracepoint; agents clear it from every process.
func (c *Client) Remove(ctx context.Context, id string) error {
	ctx, release := c.perms.guard(ctx, c.perms.jsPatterns("$KV.>")...)
	defer release()
	if err := c.tps.Delete(ctx, id); err != nil {
		return fmt.Errorf("removing tracepoint %s: %w", id, denied(ctx, err))
	}
	return nil
}

// Tracepoints lists the declared tracepoints.
func (c *Client) Tracepoints(ctx context.Context) ([]Spec, error) {
	ctx, release := c.perms.guard(ctx, c.perms.jsPatterns()...)
	defer release()
	lister, err := c.tps.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing tracepoints: %w", denied(ctx, err))
	}
	var specs []Spec
	for key := range lister.Keys() {
		e, err := c.tps.Get(ctx, key)
		if err != nil {
			continue
		}
		var s Spec
		if err := Decode(e.Value(), "tracepoint spec", &s); err != nil {
			return nil, fmt.Errorf("reading tracepoint %s: %w", key, err)
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// StatusEvent is one change of a tracepoint's status.
type StatusEvent struct {
	Status
	Deleted bool // the agent withdrew this entry (tracepoint cleared there)
}

// WatchStatus streams the status entries of tracepoint id: first the current
// ones, then every change, until ctx ends. The channel is then closed.
func (c *Client) WatchStatus(ctx context.Context, id string) (<-chan StatusEvent, error) {
	gctx, release := c.perms.guardLive(ctx, c.perms.jsPatterns()...)
	// The current entries, then every change in order: the bucket keeps
	// a few values per key, so a watcher that lags still sees an entry's
	// last words before its deletion.
	w, err := c.status.Watch(gctx, id+".>")
	release()
	if err != nil {
		return nil, fmt.Errorf("watching the status of tracepoint %s: %w", id, denied(gctx, err))
	}
	out := make(chan StatusEvent, 64)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue // end of the initial values
				}
				var ev StatusEvent
				if e.Operation() == jetstream.KeyValuePut {
					if err := Decode(e.Value(), "status", &ev.Status); err != nil {
						ev.Status = Status{State: StateError, Message: err.Error()}
					}
				} else {
					ev.Deleted = true
				}
				parseStatusKey(e.Key(), &ev.Status)
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func parseStatusKey(key string, s *Status) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return
	}
	s.Tracepoint, s.Host = parts[0], parts[1]
	s.Pid, _ = strconv.Atoi(parts[2])
}

// HitStreamEnd returns the sequence of the last message in the hit stream
// (0 if it is empty): a replay reads up to it (HitOptions.Until).
func (c *Client) HitStreamEnd(ctx context.Context) (uint64, error) {
	gctx, release := c.perms.guard(ctx, c.perms.jsPatterns()...)
	defer release()
	st, err := c.js.Stream(gctx, c.subj.HitStream())
	if err != nil {
		return 0, fmt.Errorf("reading where the hit stream ends: %w", denied(gctx, err))
	}
	return st.CachedInfo().State.LastSeq, nil
}

// StoredHits returns how many hits of tracepoint the hit stream holds,
// per host: what was stored, whoever reads it. A HitBatch counts its hits,
// which its header says (HitsHeader): only the headers are read.
func (c *Client) StoredHits(ctx context.Context, tracepoint string) (map[string]uint64, error) {
	gctx, release := c.perms.guard(ctx, c.perms.jsPatterns()...)
	defer release()
	st, err := c.js.Stream(gctx, c.subj.HitStream())
	if err != nil {
		return nil, fmt.Errorf("counting the hits of %s: %w", tracepoint, denied(gctx, err))
	}
	info, err := st.Info(gctx, jetstream.WithSubjectFilter(c.subj.TraceOf(tracepoint)))
	if err != nil {
		return nil, fmt.Errorf("counting the hits of %s: %w", tracepoint, denied(gctx, err))
	}
	out := make(map[string]uint64, len(info.State.Subjects))
	var msgs uint64
	for _, n := range info.State.Subjects {
		msgs += n
	}
	if msgs == 0 {
		return out, nil
	}
	cons, err := c.js.OrderedConsumer(gctx, c.subj.HitStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{c.subj.TraceOf(tracepoint)}, DeliverPolicy: jetstream.DeliverAllPolicy, HeadersOnly: true})
	if err != nil {
		return nil, fmt.Errorf("counting the hits of %s: %w", tracepoint, denied(gctx, err))
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("counting the hits of %s: %w", tracepoint, denied(gctx, err))
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(gctx))
		if err != nil {
			return nil, fmt.Errorf("counting the hits of %s: %w", tracepoint, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("counting the hits of %s: %w", tracepoint, err)
		}
		if host, ok := c.subj.TraceHost(msg.Subject()); ok {
			n, err := strconv.ParseUint(msg.Headers().Get(HitsHeader), 10, 32)
			if err != nil || n == 0 {
				n = 1
			}
			out[host] += n
		}
		if md.NumPending == 0 {
			return out, nil
		}
	}
}

// markHost makes the host of the subject a hit came on its host: only that
// host's agent may publish there, while the body says whatever its sender
// wrote. A body that names another host is kept as evidence in Errors.
func markHost(h *Hit, subj Subjects, subject string) {
	host, ok := subj.TraceHost(subject)
	if !ok {
		host = "?"
	}
	if h.Host != host {
		h.Errors = append(h.Errors, fmt.Sprintf("this hit names host %q but was published on %s, which only host %s's agent may publish on: it is shown as %s's. Check that agent's configuration, or who holds its credentials", h.Host, subject, host, host))
		h.Host = host
	}
}
