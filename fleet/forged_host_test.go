package fleet_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
)

// The host of a hit or a heartbeat is the one its subject or key names,
// which the permission layout lets only that host's agent write: as the
// agent of rel-a, a hit naming rel-b and a heartbeat naming prod-db-1 show
// as rel-a's, marked, and no reader lists rel-b or prod-db-1.
func TestForgedHost(t *testing.T) {
	subj := fleet.NewSubjects("")
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "editor", Password: "ed", Permissions: subj.EditorPermissions().Server()},
			{Username: "agent-rel-a", Password: "a", Permissions: subj.AgentPermissions("rel-a").Server()},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := fleet.StartServerOptions(ctx, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	editor := connectAs(t, s, "editor", "ed")
	relA := connectAs(t, s, "agent-rel-a", "a")

	// The agent of rel-a answers its profile requests, so that it is listed
	// as live.
	sub, err := relA.Conn().Subscribe(subj.ProfileGet("rel-a"), func(m *nats.Msg) {
		m.Respond(fleet.Encode(&fleet.Profile{Host: fleet.HostInfo{Name: "prod-db-1"}}))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	relA.Conn().Flush()

	r, err := editor.Hits(ctx, fleet.HitOptions{Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, host := range []string{"rel-b", "rel-a"} {
		hit := fleet.Hit{Tracepoint: "tp", Host: host, Pid: 7, File: "main.go", Line: 3}
		if _, err := relA.JetStream().Publish(ctx, subj.Trace("rel-a", "tp"), fleet.Encode(&hit)); err != nil {
			t.Fatalf("publishing as rel-a: %v", err)
		}
	}
	forged, err := r.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if forged.Host != "rel-a" || len(forged.Errors) != 1 || !strings.Contains(forged.Errors[0], `this hit names host "rel-b" but was published on riptrace.rel-a.hits.tp`) {
		t.Errorf("a hit rel-a published naming rel-b reads as host %q, errors %q; want rel-a's, marked", forged.Host, forged.Errors)
	}
	honest, err := r.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if honest.Host != "rel-a" || len(honest.Errors) != 0 {
		t.Errorf("an honest hit reads as host %q, errors %q", honest.Host, honest.Errors)
	}

	hb := fleet.Heartbeat{Host: "prod-db-1", Updated: time.Now().UTC(), Every: fleet.Duration(5 * time.Second)}
	if _, err := relA.HostKV().Put(ctx, "rel-a", fleet.Encode(&hb)); err != nil {
		t.Fatalf("writing rel-a's heartbeat as its agent: %v", err)
	}
	hosts, err := editor.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].Name != "rel-a" || hosts[0].Gone || !strings.Contains(hosts[0].Error, `the heartbeat under key rel-a names host "prod-db-1"`) {
		t.Fatalf("hosts = %+v, want rel-a alone, live, marked", hosts)
	}
	// Nor can it write another host's key: the layout refuses it (the
	// server drops the write; the writer's wait ends without an answer).
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if _, err := relA.HostKV().Put(pctx, "prod-db-1", fleet.Encode(&hb)); err == nil {
		t.Error("the agent of rel-a wrote the heartbeat of prod-db-1")
	}
}
