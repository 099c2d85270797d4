package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
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
}

// Server is an embedded nats-server with JetStream and the RipTrace stream and
// buckets in place.
type Server struct {
	*server.Server
	clock *Client // answers the clock subject; nil when none can
}

// StartServer starts an embedded nats-server, waits until it accepts
// connections and creates the hit stream and buckets.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("parsing listen address %q (want HOST:PORT, for example 127.0.0.1:4222): %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("parsing port in %q: %w", cfg.Listen, err)
	}
	opts := &server.Options{
		ServerName: "riptrace",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		NoLog:      !cfg.Logs,
		NoSigs:     true,
	}
	if cfg.DataDir == "" {
		opts.JetStreamMaxStore = 1 << 30
		opts.JetStreamMaxMemory = 1 << 30
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring nats-server: %w", err)
	}
	if cfg.Logs {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats-server did not accept connections on %s within 10s: is the port in use? Pick another with --listen", cfg.Listen)
	}
	s := &Server{Server: ns}
	c, err := Connect(ctx, "", ClientOptions{Prefix: cfg.Prefix, Name: "riptrace-server", NATS: []nats.Option{nats.InProcessServer(ns)}})
	if err != nil {
		ns.Shutdown()
		return nil, err
	}
	if err := s.serveClock(c); err != nil {
		c.Close()
		ns.Shutdown()
		return nil, err
	}
	return s, nil
}

// serveClock keeps c open to answer the clock subject: the server's clock
// is the reference of the timeline.
func (s *Server) serveClock(c *Client) error {
	if _, err := c.ServeClock(); err != nil {
		return err
	}
	s.clock = c
	return nil
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	if s.clock != nil {
		s.clock.Close()
	}
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
}

// ensureResources creates or updates the hit stream and the buckets. It is
// idempotent, so every client runs it: a user pointing RipTrace at an existing
// NATS cluster needs nothing created by hand.
func ensureResources(ctx context.Context, js jetstream.JetStream, subj Subjects) (tps, status, hosts jetstream.KeyValue, err error) {
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        subj.HitStream(),
		Description: "RipTrace hits; the stream sequence is the global order",
		Subjects:    []string{subj.TraceAll(), subj.WatermarkAll(), subj.LegacyTraceAll(), subj.LegacyWatermarkAll()},
		Storage:     jetstream.FileStorage,
		MaxAge:      24 * time.Hour,
		MaxBytes:    1 << 30,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, nil, nil, jsError("creating the hit stream "+subj.HitStream(), err)
	}
	tps, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      subj.TracepointBucket(),
		Description: "RipTrace declared tracepoints (desired state)",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, nil, nil, jsError("creating the tracepoint bucket", err)
	}
	status, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      subj.StatusBucket(),
		Description: "RipTrace tracepoint status per host and process",
		Storage:     jetstream.FileStorage,
		TTL:         24 * time.Hour,
	})
	if err != nil {
		return nil, nil, nil, jsError("creating the status bucket", err)
	}
	hosts, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      subj.HostBucket(),
		Description: "RipTrace agent heartbeats",
		Storage:     jetstream.FileStorage,
		TTL:         time.Minute,
	})
	if err != nil {
		return nil, nil, nil, jsError("creating the host bucket", err)
	}
	return tps, status, hosts, nil
}

func jsError(doing string, err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("%s: JetStream is not enabled on this NATS server: run `riptrace server`, or start nats-server with -js", doing)
	}
	return fmt.Errorf("%s: %w", doing, err)
}
