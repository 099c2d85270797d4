package fleet_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// TestWatchSpecsResync: a spec watch starts with a resync of the bucket,
// follows changes, and after the server restarts (losing the watcher's
// consumer) resyncs, so that a spec removed and one added meanwhile are
// seen as such.
func TestWatchSpecsResync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func(listen string) *fleet.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: listen, DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	connect := func(s *fleet.Server) *fleet.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := fleet.Connect(ctx, s.ClientURL(), fleet.ClientOptions{Name: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	spec := func(id string) *fleet.Spec {
		return &fleet.Spec{ID: id, Location: fleet.Location{Path: "main.go", Line: 3}}
	}
	srv := start("127.0.0.1:-1")
	listen := fmt.Sprintf("127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
	t.Cleanup(func() { srv.Shutdown() })
	c := connect(srv)
	if err := c.Declare(context.Background(), spec("before")); err != nil {
		t.Fatal(err)
	}
	w, err := c.WatchSpecs(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// declared applies events as an agent does.
	declared := map[string]bool{}
	resyncs := 0
	await := func(want ...string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			if got := slices.Sorted(maps.Keys(declared)); slices.Equal(got, want) {
				return
			}
			select {
			case ev := <-w.Events():
				if ev.Resync {
					resyncs++
					declared = map[string]bool{}
				}
				for _, e := range ev.Entries {
					delete(declared, e.Key)
					if !e.Deleted {
						declared[e.Key] = true
					}
				}
			case <-deadline:
				t.Fatalf("specs %v after 30s, want %v", slices.Sorted(maps.Keys(declared)), want)
			}
		}
	}
	await("before")
	if resyncs != 1 {
		t.Fatalf("%d resyncs at start, want 1", resyncs)
	}
	if err := c.Declare(context.Background(), spec("during")); err != nil {
		t.Fatal(err)
	}
	await("before", "during")

	srv.Shutdown()
	srv = start(listen)
	other := connect(srv)
	if err := other.Remove(context.Background(), "before"); err != nil {
		t.Fatal(err)
	}
	if err := other.Declare(context.Background(), spec("after")); err != nil {
		t.Fatal(err)
	}
	await("after", "during")
	if resyncs < 2 {
		t.Errorf("%d resyncs, want one more after the restart", resyncs)
	}
}
