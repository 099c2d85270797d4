package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestHitsInStreamOrder publishes hits from several hosts at once and checks
// that two readers see them in one order, and that a late reader can replay
// them.
func TestHitsInStreamOrder(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t)) // first registered, so it runs after the server is down
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r1, err := c.Hits(ctx, fleet.HitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()

	const perHost = 50
	hosts := []string{"a", "b", "c"}
	errc := make(chan error, len(hosts))
	for _, host := range hosts {
		go func() {
			for i := range perHost {
				h := fleet.Hit{Tracepoint: "tp", Host: host, Pid: i}
				if err := c.Conn().Publish(c.Subjects().Trace(host, "tp"), fleet.Encode(&h)); err != nil {
					errc <- err
					return
				}
			}
			errc <- c.Conn().Flush()
		}()
	}
	for range hosts {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	// A malformed message in the stream is reported, and reading goes on.
	if err := c.Conn().Publish(c.Subjects().Trace("x", "tp"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	last := fleet.Hit{Tracepoint: "other", Host: "a"}
	c.Conn().Publish(c.Subjects().Trace("a", "other"), fleet.Encode(&last))

	read := func(r *fleet.HitReader, n int) []fleet.Hit {
		var out []fleet.Hit
		for len(out) < n {
			h, err := r.Next(ctx)
			if err != nil {
				t.Fatalf("after %d hits: %v", len(out), err)
			}
			out = append(out, h)
		}
		return out
	}
	first := read(r1, len(hosts)*perHost)
	perHostSeen := map[string]int{}
	for i, h := range first {
		if i > 0 && h.Seq <= first[i-1].Seq {
			t.Fatalf("hit %d has seq %d after %d", i, h.Seq, first[i-1].Seq)
		}
		if h.ServerTime.IsZero() {
			t.Fatalf("hit %d has no server time", i)
		}
		if h.Pid != perHostSeen[h.Host] {
			t.Fatalf("host %s: hit pid %d out of publish order (want %d)", h.Host, h.Pid, perHostSeen[h.Host])
		}
		perHostSeen[h.Host]++
	}
	_, err = r1.Next(ctx)
	var fe *fleet.Error
	if !errors.As(err, &fe) || !strings.Contains(fe.Message, "malformed hit") {
		t.Fatalf("malformed message: %v, want a malformed hit error", err)
	}
	if h := read(r1, 1)[0]; h.Tracepoint != "other" {
		t.Fatalf("after the malformed message: %+v", h)
	}

	// A late reader filtering on one tracepoint replays the same order.
	r2, err := c.Hits(ctx, fleet.HitOptions{Replay: true, Tracepoints: []string{"tp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	for i, h := range read(r2, len(first)) {
		if h.Seq != first[i].Seq || h.Host != first[i].Host || h.Pid != first[i].Pid {
			t.Fatalf("replay %d = %s/%d seq %d, live reader saw %s/%d seq %d", i, h.Host, h.Pid, h.Seq, first[i].Host, first[i].Pid, first[i].Seq)
		}
	}
	// And one starting at a sequence starts there.
	r3, err := c.Hits(ctx, fleet.HitOptions{StartSeq: first[10].Seq})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if h := read(r3, 1)[0]; h.Seq != first[10].Seq {
		t.Fatalf("StartSeq %d: first hit has seq %d", first[10].Seq, h.Seq)
	}
}

func TestDeclareAndList(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx := context.Background()
	spec := &fleet.Spec{ID: "tp-1", Location: fleet.Location{Path: "x.go", Line: 3}}
	if err := c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	bad := &fleet.Spec{ID: "tp-2", Location: fleet.Location{Path: "x.go", Line: 3}, Condition: "a >"}
	if err := c.Declare(ctx, bad); fleet.AsError(err).Code != fleet.CodeBadCondition {
		t.Fatalf("declaring a bad condition: %v", err)
	}
	specs, err := c.Tracepoints(ctx)
	if err != nil || len(specs) != 1 || specs[0].ID != "tp-1" || specs[0].Created.IsZero() {
		t.Fatalf("Tracepoints = %+v, %v", specs, err)
	}
	if err := c.Remove(ctx, "tp-1"); err != nil {
		t.Fatal(err)
	}
	if specs, _ := c.Tracepoints(ctx); len(specs) != 0 {
		t.Fatalf("after Remove: %+v", specs)
	}
}

func TestNoAgent(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	_, err := c.Profile(context.Background(), "nobody")
	if err == nil || !strings.Contains(err.Error(), "no agent answers for host \"nobody\"") {
		t.Fatalf("Profile of a missing host: %v", err)
	}
	hosts, err := c.Hosts(context.Background())
	if err != nil || len(hosts) != 0 {
		t.Fatalf("Hosts = %+v, %v", hosts, err)
	}
}

func TestConnectRefused(t *testing.T) {
	_, err := fleet.Connect(context.Background(), "nats://127.0.0.1:1", fleet.ClientOptions{})
	if err == nil || !strings.Contains(err.Error(), "riptrace server") {
		t.Fatalf("Connect to nothing: %v, want a hint to start riptrace server", err)
	}
}

// TestEmbeddedServer starts a server on a data directory that does not
// exist yet, as the benches and a first `riptrace server --data` give.
func TestEmbeddedServer(t *testing.T) {
	ctx := context.Background()
	srv, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: filepath.Join(t.TempDir(), "not", "yet")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	c, err := fleet.Connect(ctx, srv.ClientURL(), fleet.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.JetStream().Stream(ctx, c.Subjects().HitStream())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.Subjects; len(got) != 4 || got[0] != "riptrace.*.hits.*" || got[1] != "riptrace.*.marks.*" {
		t.Fatalf("hit stream subjects = %v", got)
	}
	if _, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: "nonsense"}); err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Fatalf("bad listen address: %v", err)
	}
}

// checkNoGoroutineLeak returns a func that fails t if goroutines of fleet,
// nats.go or nats-server remain after a grace period (nats-server's
// checkNoGoroutineLeak). Register it first, so that it runs after the
// test's other cleanups.
func checkNoGoroutineLeak(t *testing.T) func() {
	return func() {
		if err := testsupport.NoGoroutines(10*time.Second, "goroutines of fleet and NATS", "riptrace/riptrace/fleet.", "github.com/nats-io/"); err != nil {
			t.Error(err)
		}
	}
}

func TestLeaseRenewsAndRemoves(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx := context.Background()
	l := c.NewLease(300 * time.Millisecond)
	spec := &fleet.Spec{ID: "leased", Location: fleet.Location{Path: "x.go", Line: 1}}
	if err := l.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	first := spec.Limits.ExpiresAt
	// The renewal pushes the expiry forward while the lease lives.
	testsupport.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		specs, err := c.Tracepoints(ctx)
		if err != nil {
			return err
		}
		if len(specs) == 1 && specs[0].Limits.ExpiresAt.After(first) {
			return nil
		}
		return fmt.Errorf("expiry not renewed: %+v", specs)
	})
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if specs, _ := c.Tracepoints(ctx); len(specs) != 0 {
		t.Fatalf("after Close: %+v", specs)
	}
}

// TestLeaseUntil: a tracepoint declared until a time its owner gave never
// expires past it, and the lease removes it from the fleet once it passed;
// the others of the lease live on.
func TestLeaseUntil(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx := context.Background()
	l := c.NewLease(600 * time.Millisecond)
	defer l.Close(ctx)
	until := time.Now().Add(time.Second)
	ending := &fleet.Spec{ID: "ending", Location: fleet.Location{Path: "x.go", Line: 1}}
	if err := l.DeclareUntil(ctx, ending, until); err != nil {
		t.Fatal(err)
	}
	if got, ok := l.Until("ending"); !ok || !got.Equal(until) {
		t.Errorf("Until = %v %v, want %v", got, ok, until)
	}
	lasting := &fleet.Spec{ID: "lasting", Location: fleet.Location{Path: "x.go", Line: 2}}
	if err := l.Declare(ctx, lasting); err != nil {
		t.Fatal(err)
	}
	testsupport.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		specs, err := c.Tracepoints(ctx)
		if err != nil {
			return err
		}
		for _, sp := range specs {
			if sp.ID == "ending" && sp.Limits.ExpiresAt.After(until) {
				t.Fatalf("ending expires at %v, after its end %v", sp.Limits.ExpiresAt, until)
			}
		}
		if len(specs) != 1 || specs[0].ID != "lasting" {
			return fmt.Errorf("declared %+v, want lasting alone once ending's end passed", specs)
		}
		if _, ok := l.Until("ending"); ok {
			return fmt.Errorf("the lease still holds ending after removing it")
		}
		return nil
	})
}

// TestStatusKeepsLastWords: an agent that withdraws an entry puts its last
// words first, then deletes it. The bucket keeps both, so a watcher that
// lags behind the two writes still reads the words before the deletion
// (with one value per key it found only the deletion, and a trace never
// said that the agent had stopped). A bucket made by an older version, with
// one value per key, is brought up to date by the first client.
func TestStatusKeepsLastWords(t *testing.T) {
	ctx := context.Background()
	s := fleettest.RunServer(t)
	_, js := fleettest.Raw(t, s)
	bucket := fleet.NewSubjects("").StatusBucket()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	c := fleettest.Connect(t, s)

	st := fleet.Status{Tracepoint: "tp-words", Host: "h1", Pid: 42, State: fleet.StateDone, Message: "the agent of host h1 stopped"}
	if err := c.PutStatus(ctx, &st); err != nil {
		t.Fatal(err)
	}
	key := fleet.StatusKey(st.Tracepoint, st.Host, st.Pid)
	if err := c.WithdrawStatus(ctx, key); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	history, err := kv.History(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(history) != 2 || history[0].Operation() != jetstream.KeyValuePut || history[1].Operation() != jetstream.KeyValueDelete {
		t.Fatalf("status history of %s: %d entries, want the last words then the deletion", key, len(history))
	}
	var said fleet.Status
	if err := fleet.Decode(history[0].Value(), "status", &said); err != nil || said.Message != st.Message {
		t.Fatalf("last words kept: %+v, %v; want %q", said, err, st.Message)
	}
}

// TestLeaseRemoveBeatsRenewal removes tracepoints while the lease renews
// them every 3 ms: a renewal in flight must never declare again what was
// just removed, nor put back an older version of what was just declared.
func TestLeaseRemoveBeatsRenewal(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx := context.Background()
	l := c.NewLease(9 * time.Millisecond)
	for i := range 300 {
		id := fmt.Sprintf("race-%d", i)
		if err := l.Declare(ctx, &fleet.Spec{ID: id, Location: fleet.Location{Path: "x.go", Line: 1}}); err != nil {
			t.Fatal(err)
		}
		edited := &fleet.Spec{ID: id, Condition: "n > 1", Location: fleet.Location{Path: "x.go", Line: 1}}
		if err := l.Declare(ctx, edited); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := l.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.Abandon() // stops renewing, and waits for a renewal in flight
	specs, err := c.Tracepoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 150 {
		t.Errorf("%d tracepoints declared after removing 150 of 300, want 150", len(specs))
	}
	for _, sp := range specs {
		var i int
		fmt.Sscanf(sp.ID, "race-%d", &i)
		if i%2 == 0 {
			t.Errorf("%s was removed, and is declared again", sp.ID)
		}
		if sp.Condition != "n > 1" {
			t.Errorf("%s is declared with condition %q, an older version than the last declared", sp.ID, sp.Condition)
		}
	}
}

// TestMoreAgentsThanConsumerDefault has more agents watch the declared
// tracepoints than nats-server's default of 1000 consumers per stream:
// each agent's watch is a consumer of its own, and every one must work.
func TestMoreAgentsThanConsumerDefault(t *testing.T) {
	ctx := context.Background()
	srv, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	c, err := fleet.Connect(ctx, srv.ClientURL(), fleet.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const agents = 1010
	for i := range agents {
		w, err := c.WatchSpecs(ctx, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("agent %d of %d: %v", i+1, agents, err)
		}
		defer w.Stop()
	}
}

// TestStoredHits counts the hits the stream holds of one tracepoint,
// per host, and none of another's.
func TestStoredHits(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx := context.Background()
	for _, h := range []fleet.Hit{{Tracepoint: "a", Host: "h1"}, {Tracepoint: "a", Host: "h1"}, {Tracepoint: "a", Host: "h2"}, {Tracepoint: "b", Host: "h1"}} {
		if err := c.PublishHit(ctx, &h); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.StoredHits(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["h1"] != 2 || got["h2"] != 1 {
		t.Fatalf("stored hits of a: %v, want h1 2, h2 1", got)
	}
}
