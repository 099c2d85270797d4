package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// Listen is HOST:PORT; port -1 picks a free one.
	Listen string
	// DataDir holds JetStream's file store. Empty keeps it in memory.
	DataDir string
	// Prefix is the subject prefix (DefaultPrefix if empty).
	Prefix string
	// Logs turns on nats-server's own log on stderr.
	Logs bool
	// Name is the server's name, unique in a cluster; "riptrace" if
	// empty.
	Name string
	// Cluster, when its Listen is set, makes the server a member of a
	// NATS cluster.
	Cluster ClusterConfig
	// LeafListen, when set (HOST:PORT), accepts leaf nodes: servers at
	// sites whose agents are in another network, which dial out to this
	// one.
	LeafListen string
	// LeafRemotes, when set, makes this server a leaf node of the hub
	// servers at these URLs (nats-leaf://HOST:PORT): the site's agents
	// connect to it, and it dials out. A leaf keeps no JetStream of its
	// own: the hub's stream and buckets serve the site through it.
	LeafRemotes []string
	// Replicas of the hit stream and buckets when this server creates
	// them; 0 means 3 in a cluster of three servers or more, else 1.
	Replicas int
	// Domain names the hub's JetStream for clients behind leaf nodes:
	// NATS lets JetStream requests cross a leaf connection only when
	// they name the domain (ClientOptions.Domain, $RIPTRACE_JS_DOMAIN).
	Domain string
}

// ClusterConfig is a server's place in a NATS cluster.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every member.
	Name string
	// Listen is HOST:PORT for the other members' routes.
	Listen string
	// Routes are the other members' route URLs (nats-route://HOST:PORT).
	// Listing every member, itself included, is fine: the same list can
	// be given to all.
	Routes []string
}

// Server is an embedded nats-server with JetStream and the RipTrace stream and
// buckets in place.
//
// A member of a cluster cannot create the stream until enough members
// are up for JetStream to elect a leader; its one goroutine, setup,
// retries until then and serves the clock from then on.
type Server struct {
	*server.Server
	stop  context.CancelFunc // stops setup
	ready chan struct{}      // closed once the stream and buckets exist, and the clock is served
	lock  *os.File           // holds the data directory; nil when in memory

	// mu guards clock.
	mu    sync.Mutex
	clock *Client // answers the clock subject; nil when none can
}

// StartServer starts an embedded nats-server, waits until it accepts
// connections and creates the hit stream and buckets; a member of a
// cluster creates them once the cluster can (Ready).
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	host, port, err := splitListen(cfg.Listen, "--listen")
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       host,
		Port:       port,
		JetStream:  len(cfg.LeafRemotes) == 0,
		StoreDir:   cfg.DataDir,
		NoLog:      !cfg.Logs,
		NoSigs:     true,
	}
	if !opts.JetStream && cfg.Domain != "" {
		return nil, fmt.Errorf("a leaf node keeps no JetStream, so no domain: give --domain to the hub's servers, and to the site's agents as $RIPTRACE_JS_DOMAIN")
	}
	if cfg.DataDir == "" {
		opts.JetStreamMaxStore = 1 << 30
		opts.JetStreamMaxMemory = 1 << 30
	}
	if cfg.Cluster.Listen != "" {
		if opts.Cluster.Host, opts.Cluster.Port, err = splitListen(cfg.Cluster.Listen, "--cluster"); err != nil {
			return nil, err
		}
		opts.Cluster.Name = cfg.Cluster.Name
		if opts.Routes, err = routeURLs(cfg.Cluster.Routes); err != nil {
			return nil, err
		}
	}
	if cfg.LeafListen != "" {
		if opts.LeafNode.Host, opts.LeafNode.Port, err = splitListen(cfg.LeafListen, "--leaf-listen"); err != nil {
			return nil, err
		}
	}
	for _, r := range cfg.LeafRemotes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("parsing the hub URL %q: want nats-leaf://HOST:PORT, the hub's leafnodes listen address", r)
		}
		opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: []*url.URL{u}})
	}
	opts.JetStreamDomain = cfg.Domain
	return startServer(ctx, opts, cfg.Prefix, cfg.Replicas)
}

func splitListen(listen, flag string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("parsing %s %q: want HOST:PORT, for example 127.0.0.1:4222: %w", flag, listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("parsing the port in %s %q: %w", flag, listen, err)
	}
	return host, port, nil
}

func routeURLs(routes []string) ([]*url.URL, error) {
	var out []*url.URL
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("parsing the route %q: want nats-route://HOST:PORT, another member's cluster address", r)
		}
		out = append(out, u)
	}
	return out, nil
}

// clusterReplicas is the replication of the stream and buckets in a
// cluster of n servers (routes given, itself included at most once).
func clusterReplicas(opts *server.Options) int {
	if opts.Cluster.Port == 0 {
		return 1
	}
	// The routes may list this server too: count the others by address.
	self := net.JoinHostPort(opts.Cluster.Host, strconv.Itoa(opts.Cluster.Port))
	others := 0
	for _, u := range opts.Routes {
		if u.Host != self {
			others++
		}
	}
	if others+1 >= 3 {
		return 3
	}
	return 1
}

// startServer starts nats-server with opts and sets up the stream and
// buckets over an in-process connection logged in with login, at
// replicas (0: from the cluster's size).
func startServer(ctx context.Context, opts *server.Options, prefix string, replicas int) (*Server, error) {
	if opts.ServerName == "" {
		opts.ServerName = "riptrace"
	}
	if replicas == 0 {
		replicas = clusterReplicas(opts)
	}
	if opts.JetStreamLimits.DefaultMaxConsumers == 0 {
		// nats-server allows 1000 consumers per stream unless told
		// otherwise, and every agent watches the tracepoint bucket with
		// one of its own: the 1001st agent, or any after a cluster
		// restart while the old consumers linger, would watch nothing.
		// A configuration file that sets the limit keeps it.
		opts.JetStreamLimits.DefaultMaxConsumers = -1
	}
	login, err := setupLogin(opts, prefix)
	if err != nil {
		return nil, err
	}
	lock, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("configuring nats-server: %w", err)
	}
	if !opts.NoLog {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("nats-server did not accept connections on %s:%d within 10s. Run with -v to see nats-server's log", opts.Host, opts.Port)
	}
	sctx, stop := context.WithCancel(context.Background())
	s := &Server{Server: ns, stop: stop, ready: make(chan struct{}), lock: lock}
	switch {
	case login == nil || !opts.JetStream:
		// Operator mode, or a leaf node: the first client allowed to
		// creates the stream and buckets (on the hub, for a leaf), and
		// the hub's server answers the clock.
		close(s.ready)
		return s, nil
	case opts.Cluster.Port != 0:
		go s.setup(sctx, ns, login, prefix, replicas, opts.JetStreamDomain)
		return s, nil
	}
	c, err := Connect(ctx, "", ClientOptions{Prefix: prefix, Name: "riptrace-server", Replicas: replicas, Domain: opts.JetStreamDomain, NATS: append(login, nats.InProcessServer(ns))})
	if err != nil {
		s.Shutdown()
		return nil, fmt.Errorf("creating the hit stream and buckets: %w", err)
	}
	if err := s.serveClock(c); err != nil {
		c.Close()
		s.Shutdown()
		return nil, err
	}
	close(s.ready)
	return s, nil
}

// prepare checks, before nats-server starts, what it would only log: that
// the port is free, and that no other server holds the data directory,
// which it then locks for this one.
func prepare(opts *server.Options) (*os.File, error) {
	if err := checkListen(opts.Host, opts.Port); err != nil {
		return nil, err
	}
	if opts.StoreDir == "" || !opts.JetStream {
		return nil, nil
	}
	return lockDataDir(opts.StoreDir)
}

// setupEvery is how soon a member of a cluster tries again to create the
// stream and buckets.
const setupEvery = time.Second

// setup creates the stream and buckets and serves the clock, retrying
// until the cluster has elected a JetStream leader.
func (s *Server) setup(ctx context.Context, ns *server.Server, login []nats.Option, prefix string, replicas int, domain string) {
	told := false
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := Connect(cctx, "", ClientOptions{Prefix: prefix, Name: "riptrace-server", Replicas: replicas, Domain: domain, NATS: append(login, nats.InProcessServer(ns))})
		cancel()
		if err == nil {
			if err = s.serveClock(c); err == nil {
				close(s.ready)
				return
			}
			c.Close()
		}
		if !told {
			ns.Noticef("riptrace: waiting for the cluster to create the hit stream and buckets: %v", err)
			told = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(setupEvery):
		}
	}
}

// Ready is closed once the stream and buckets exist and the clock is
// served: at once for a single server, when enough members are up for a
// member of a cluster.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// serveClock keeps c open to answer the clock subject: the server's clock
// is the reference of the timeline.
func (s *Server) serveClock(c *Client) error {
	if _, err := c.ServeClock(); err != nil {
		return err
	}
	s.mu.Lock()
	s.clock = c
	s.mu.Unlock()
	return nil
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.stop()
	s.mu.Lock()
	if s.clock != nil {
		s.clock.Close()
	}
	s.mu.Unlock()
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	if s.lock != nil {
		s.lock.Close()
	}
}

// ensureResources creates the hit stream and the buckets, or updates
// them where they differ from what this version needs. It is idempotent,
// so every client runs it: a user pointing RipTrace at an existing NATS
// cluster needs nothing created by hand. What exists and is right is left
// alone, so that a thousand agents connecting at once send lookups, not
// updates through the cluster's meta leader. replicas is the replication
// wanted (0: what exists, and when creating, 3 if the client knows of three
// servers or more, else 1); an existing stream or bucket is never scaled
// down.
// statusHistory is how many values the status bucket keeps per key.
const statusHistory = 8

func ensureResources(ctx context.Context, js jetstream.JetStream, subj Subjects, replicas int) (tps, status, hosts jetstream.KeyValue, err error) {
	err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        subj.HitStream(),
		Description: "RipTrace hits; the stream sequence is the global order",
		Subjects:    []string{subj.TraceAll(), subj.WatermarkAll(), subj.LegacyTraceAll(), subj.LegacyWatermarkAll()},
		Storage:     jetstream.FileStorage,
		MaxAge:      24 * time.Hour,
		MaxBytes:    1 << 30,
		Discard:     jetstream.DiscardOld,
		Duplicates:  HitDuplicateWindow,
	}, replicas)
	if err != nil {
		return nil, nil, nil, jsError("creating the hit stream "+subj.HitStream(), err)
	}
	buckets := []jetstream.KeyValueConfig{{
		Bucket:      subj.TracepointBucket(),
		Description: "RipTrace declared tracepoints (desired state)",
		Storage:     jetstream.FileStorage,
	}, {
		Bucket:      subj.StatusBucket(),
		Description: "RipTrace tracepoint status per host and process",
		Storage:     jetstream.FileStorage,
		TTL:         24 * time.Hour,
		// An agent that withdraws an entry first puts its last words
		// ("done: the agent stopped"), then deletes it. With one value
		// per key, a watcher behind by one message would find the words
		// already replaced by the deletion and tell its user nothing.
		History: statusHistory,
	}, {
		Bucket:      subj.HostBucket(),
		Description: "RipTrace agent heartbeats",
		Storage:     jetstream.FileStorage,
		TTL:         time.Minute,
	}}
	kvs := make([]jetstream.KeyValue, len(buckets))
	for i, cfg := range buckets {
		if kvs[i], err = ensureBucket(ctx, js, cfg, replicas); err != nil {
			return nil, nil, nil, jsError("creating the bucket "+cfg.Bucket, err)
		}
	}
	return kvs[0], kvs[1], kvs[2], nil
}

// ensureStream creates the stream of cfg, or updates it if its subjects
// or replication fall short.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, replicas int) error {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg.Replicas = createReplicas(js, replicas)
		_, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // another client made it meanwhile
		}
		return err
	}
	if err != nil {
		return err
	}
	have := st.CachedInfo().Config
	if slices.Equal(have.Subjects, cfg.Subjects) && have.Replicas >= replicas && (cfg.Duplicates == 0 || have.Duplicates >= cfg.Duplicates) {
		return nil
	}
	cfg.Replicas = max(have.Replicas, replicas, 1)
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// ensureBucket opens the bucket of cfg, creating it, or scaling it up to
// replicas.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		st, serr := kv.Status(ctx)
		if serr != nil {
			return nil, serr
		}
		bs, ok := st.(*jetstream.KeyValueBucketStatus)
		if !ok {
			return kv, nil
		}
		have := bs.StreamInfo().Config
		if have.Replicas < replicas {
			cfg.Replicas = replicas
			return js.UpdateKeyValue(ctx, cfg)
		}
		if have.MaxMsgsPerSubject < int64(max(cfg.History, 1)) {
			// Made by an older version: worth an update, but a client
			// not allowed to make one works with what exists.
			cfg.Replicas = have.Replicas
			if updated, err := js.UpdateKeyValue(ctx, cfg); err == nil {
				return updated, nil
			}
		}
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, err
	}
	cfg.Replicas = createReplicas(js, replicas)
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

// createReplicas is the replication of a stream or bucket created now:
// replicas if given, else 3 when the connection knows of three servers or
// more (a cluster's servers tell their clients of each other), else 1.
func createReplicas(js jetstream.JetStream, replicas int) int {
	switch {
	case replicas > 0:
		return replicas
	case len(js.Conn().Servers()) >= 3:
		return 3
	}
	return 1
}

func jsError(doing string, err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("%s: JetStream is not enabled on this NATS server: run `riptrace server`, or start nats-server with -js", doing)
	}
	return fmt.Errorf("%s: %w", doing, err)
}
