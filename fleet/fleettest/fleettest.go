// Package fleettest starts real NATS servers for tests: an in-process
// nats-server with JetStream on a random port, shut down by t.Cleanup
// ([RunServer]), and fleet clients on it ([Connect]). [Var] finds a
// captured variable in a hit.
package fleettest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/riptrace/riptrace/fleet"
)

// RunServer starts an in-process nats-server with JetStream on a free port.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("configuring nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start within 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect returns a fleet client on s, closed by t.Cleanup.
func Connect(t testing.TB, s *server.Server) *fleet.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := fleet.Connect(ctx, s.ClientURL(), fleet.ClientOptions{Name: t.Name()})
	if err != nil {
		t.Fatalf("connecting to %s: %v", s.ClientURL(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// Var returns the variable called name among vars, or nil.
func Var(vars []fleet.Variable, name string) *fleet.Variable {
	for i := range vars {
		if vars[i].Name == name {
			return &vars[i]
		}
	}
	return nil
}
