package scenario

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/setup"
	"github.com/riptrace/riptrace/fleet"
)

// fleetConn is the run's way to the fleet, and what it started to have one.
type fleetConn struct {
	client *fleet.Client
	server *fleet.Server // nil when joining a running fleet
	data   string        // the embedded server's store
	host   string        // the embedded agent's host name
	stop   func()        // stops the embedded agent; nil when joining
}

func (f *fleetConn) close() {
	if f.stop != nil {
		f.stop()
	}
	if f.client != nil {
		f.client.Close()
	}
	if f.server != nil {
		f.server.Shutdown()
	}
	if f.data != "" {
		os.RemoveAll(f.data)
	}
}

// Credentials are fl's, its files read from dir.
func (fl *Fleet) Credentials(dir string) fleet.Credentials {
	file := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	return fleet.Credentials{Creds: file(fl.Creds), NKey: file(fl.NKey), User: fl.User, Password: fl.Password, Token: fl.Token,
		TLS: fleet.TLSFiles{CA: file(fl.TLS.CA), Cert: file(fl.TLS.Cert), Key: file(fl.TLS.Key)}, InboxPrefix: fl.InboxPrefix}
}

// joinFleet connects to the running fleet fl names.
func joinFleet(ctx context.Context, dir string, fl *Fleet, watch []nats.Option) (*fleetConn, error) {
	c, err := fleet.Connect(ctx, fl.NATS, fleet.ClientOptions{Name: "riptrace run", Prefix: fl.Prefix, Credentials: fl.Credentials(dir), NATS: watch})
	if err != nil {
		return nil, fmt.Errorf("joining the fleet at %s: %w", fl.NATS, err)
	}
	return &fleetConn{client: c}, nil
}

// startFleet starts an embedded NATS server (in memory, on a free port) and
// an agent in this process that manages only the processes whose
// executables are named in processes. The agent runs the backends of
// opts.Backend; its Delve workers re-run this binary (see the package doc).
// watch are options of the run's own connection.
func startFleet(ctx context.Context, processes []string, opts *Options, watch []nats.Option) (_ *fleetConn, err error) {
	f := &fleetConn{}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	// A throwaway store: the hit stream alone may take a gigabyte, more
	// than the in-memory server's bound.
	if f.data, err = os.MkdirTemp("", "riptrace-run-"); err != nil {
		return nil, err
	}
	if f.server, err = fleet.StartServer(ctx, fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: f.data}); err != nil {
		return nil, fmt.Errorf("starting the embedded NATS server: %w", err)
	}
	if f.client, err = fleet.Connect(ctx, f.server.ClientURL(), fleet.ClientOptions{Name: "riptrace run", NATS: watch}); err != nil {
		return nil, err
	}
	agentConn, err := fleet.Connect(ctx, f.server.ClientURL(), fleet.ClientOptions{Name: "riptrace run agent"})
	if err != nil {
		return nil, err
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	backend := opts.Backend
	if backend == "" {
		backend = agent.BackendAuto
	}
	backends, err := setup.Backends(backend, logw)
	if err != nil {
		agentConn.Close()
		return nil, err
	}
	f.host = fmt.Sprintf("scenario-%d", os.Getpid())
	a := agent.New(agent.Config{
		Host:        f.host,
		Processes:   processes,
		ScanEvery:   100 * time.Millisecond,
		BackendName: strings.Join(backends.Names(), ","),
		Log:         slog.New(slog.NewTextHandler(logw, nil)),
	}, agentConn, backends)
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(actx); close(done) }()
	f.stop = func() {
		cancel()
		<-done
		agentConn.Close()
	}
	// The agent answers once it has scanned and sent a heartbeat.
	err = waitFor(ctx, 30*time.Second, func() error {
		hosts, err := f.client.Hosts(ctx)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == f.host && !h.Gone && h.Profile != nil {
				return nil
			}
		}
		return fmt.Errorf("the embedded agent %s has not announced itself", f.host)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// serviceGlobs are the executable names of the services, for the embedded
// agent's allow-list.
func serviceGlobs(s *Scenario) []string {
	var globs []string
	for _, sv := range s.Services {
		globs = append(globs, filepath.Base(sv.Command))
	}
	return globs
}

// waitFor polls f every 20ms until it returns nil, for at most total; the
// error then says what f said last.
func waitFor(ctx context.Context, total time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %v: %w", total, err)
		case <-tick.C:
		}
	}
}
