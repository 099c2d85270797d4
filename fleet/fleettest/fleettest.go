// Package fleettest starts real NATS servers for tests: an in-process
// nats-server with JetStream on a random port, shut down by t.Cleanup
// ([RunServer], or [RunServerWith] limits of the test's own), fleet
// clients on it ([Connect]), and plain connections for what RipTrace
// never sends ([Raw]); [NkeyUser] makes an nkey user, and [Var] finds a
// captured variable in a hit; [RealisticHit] is a hit as benchmarks send it.
package fleettest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/riptrace/riptrace/fleet"
)

// RunServer starts an in-process nats-server with JetStream on a free port.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerWith(t, nil)
}

// RunServerWith starts the server RunServer starts, with its options
// changed by change first: a test's own limits.
func RunServerWith(t testing.TB, change func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	if change != nil {
		change(opts)
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

// Raw opens a plain connection of the test's own to s, with its JetStream
// context, for what RipTrace never sends: malformed requests, raw bucket
// entries, a subscriber counting requests. Code under test goes through
// fleet.Client.
func Raw(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(t.Name()+" (raw)"))
	if err != nil {
		t.Fatalf("connecting to %s: %v", s.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("opening JetStream: %v", err)
	}
	return nc, js
}

// NkeyUser makes a user nkey and returns its public key, for a server's
// configuration, and a file holding its seed, for a client's.
func NkeyUser(t testing.TB) (pub, seedFile string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	if pub, err = kp.PublicKey(); err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile = filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return pub, seedFile
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
