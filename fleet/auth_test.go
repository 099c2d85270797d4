package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
)

// runAuthServer starts the embedded server through StartServerOptions with
// the permission layout's users: an editor and the agent of host h1.
func runAuthServer(t *testing.T) *fleet.Server {
	t.Helper()
	subj := fleet.NewSubjects("")
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "editor", Password: "ed", Permissions: subj.EditorPermissions().Server()},
			{Username: "agent-h1", Password: "h1", Permissions: subj.AgentPermissions("h1").Server()},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := fleet.StartServerOptions(ctx, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connectAs(t *testing.T, s *fleet.Server, user, password string, opts ...nats.Option) *fleet.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := fleet.Connect(ctx, s.ClientURL(), fleet.ClientOptions{Name: t.Name(), NATS: append(opts, nats.UserInfo(user, password))})
	if err != nil {
		t.Fatalf("connecting as %s: %v", user, err)
	}
	t.Cleanup(c.Close)
	return c
}

func wantPermissionError(t *testing.T, doing string, err error, want string) {
	t.Helper()
	var pe *fleet.PermissionError
	if !errors.As(err, &pe) {
		t.Errorf("%s: error %v, want a *fleet.PermissionError", doing, err)
		return
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %q does not say %q", doing, err, want)
	}
}

// TestAuthLayoutRoles exercises the permission layout with fleet clients: the
// agent of h1 serves h1, is refused h2 and the editor's calls at once with
// errors naming the permission; the editor declares, reads hits and status.
func TestAuthLayoutRoles(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := runAuthServer(t)
	editor := connectAs(t, s, "editor", "ed")
	agent := connectAs(t, s, "agent-h1", "h1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subj := agent.Subjects()

	// The agent serves its host: the editor's request gets its answer.
	sub, err := agent.Conn().Subscribe(subj.ProfileGet("h1"), func(m *nats.Msg) {
		m.Respond(fleet.Encode(&fleet.Profile{Host: fleet.HostInfo{Name: "h1"}}))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := agent.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := agent.Refused(); err != nil {
		t.Fatalf("the agent of h1 was refused serving h1: %v", err)
	}
	if p, err := editor.Profile(ctx, "h1"); err != nil || p.Host.Name != "h1" {
		t.Fatalf("the editor asking h1: %v, %v", p, err)
	}
	// It may not serve another host; Refused says so once the
	// subscription is flushed.
	if _, err := agent.Conn().Subscribe(subj.ProfileGet("h2"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	agent.Conn().Flush()
	wantPermissionError(t, "serving h2 as the agent of h1", agent.Refused(),
		`user "agent-h1" may not subscribe to riptrace.h2.profile.get (only the agent of host h2 serves its requests)`)

	// The agent's calls that need the editor role fail at once (well within
	// the 10 s a request waits for an answer) and say why.
	spec := &fleet.Spec{ID: "tp-1", Location: fleet.Location{Path: "main.go", Line: 3}}
	wantPermissionError(t, "declaring as an agent", agent.Declare(ctx, spec),
		`may not publish to $KV.riptrace_tracepoints.tp-1 (declaring and removing tracepoints is for editor and CLI users)`)
	_, err = agent.Profile(ctx, "h1")
	wantPermissionError(t, "asking a host as an agent", err, `may not publish to riptrace.h1.profile.get (sending requests to agents is for editor and CLI users)`)
	_, err = agent.Hits(ctx, fleet.HitOptions{})
	wantPermissionError(t, "reading hits as an agent", err, `(reading hits is for editor and CLI users)`)
	_, err = agent.WatchStatus(ctx, "tp-1")
	wantPermissionError(t, "watching status as an agent", err, `(reading tracepoint status is for editor and CLI users)`)
	_, err = agent.Hosts(ctx)
	wantPermissionError(t, "listing hosts as an agent", err, `(listing hosts is for editor and CLI users)`)

	// The editor declares, reads hits and status.
	if err := editor.Declare(ctx, spec); err != nil {
		t.Fatalf("declaring as the editor: %v", err)
	}
	r, err := editor.Hits(ctx, fleet.HitOptions{})
	if err != nil {
		t.Fatalf("reading hits as the editor: %v", err)
	}
	r.Close()
	wctx, wcancel := context.WithCancel(ctx)
	if _, err := editor.WatchStatus(wctx, "tp-1"); err != nil {
		t.Fatalf("watching status as the editor: %v", err)
	}
	wcancel()
	if err := editor.Remove(ctx, "tp-1"); err != nil {
		t.Fatalf("removing as the editor: %v", err)
	}
	if err := editor.Refused(); err != nil {
		t.Errorf("the editor was refused: %v", err)
	}
	// The agent publishes its host's hits and heartbeat, not another's.
	if _, err := agent.JetStream().Publish(ctx, subj.Trace("h1", "tp-1"), []byte("{}")); err != nil {
		t.Errorf("publishing h1's hits as its agent: %v", err)
	}
	if _, err := agent.HostKV().Put(ctx, "h1", []byte("{}")); err != nil {
		t.Errorf("writing h1's heartbeat as its agent: %v", err)
	}
}

// TestAnonymousRefused: a server with the layout's users takes no one
// without credentials.
func TestAnonymousRefused(t *testing.T) {
	s := runAuthServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := fleet.Connect(ctx, s.ClientURL(), fleet.ClientOptions{Name: t.Name(), NATS: []nats.Option{nats.MaxReconnects(0)}})
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("connecting anonymously: %v, want an authorization violation", err)
	}
}

// TestAuthInboxPrefixes: with the inbox prefixes of the layout, each user
// receives its replies and deliveries there and can neither read another's
// (nor those of clients without a prefix) nor answer into them; a client
// that forgets its prefix, or gives another, is told which to use.
func TestAuthInboxPrefixes(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	subj := fleet.NewSubjects("")
	edInbox, agInbox := fleet.UserInboxPrefix("editor"), fleet.UserInboxPrefix("agent-h1")
	if edInbox != "_INBOX_editor" || agInbox != "_INBOX_agent-h1" {
		t.Fatalf("UserInboxPrefix: %q, %q", edInbox, agInbox)
	}
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "editor", Password: "ed", Permissions: subj.EditorPermissions().WithInbox(edInbox).Server()},
			{Username: "agent-h1", Password: "h1", Permissions: subj.AgentPermissions("h1").WithInbox(agInbox).Server()},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := fleet.StartServerOptions(ctx, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	connect := func(user, password, prefix string, nopts ...nats.Option) (*fleet.Client, error) {
		return fleet.Connect(ctx, s.ClientURL(), fleet.ClientOptions{Name: t.Name(), Credentials: fleet.Credentials{InboxPrefix: prefix}, NATS: append(nopts, nats.UserInfo(user, password))})
	}
	async := make(chan error, 16)
	editor, err := connect("editor", "ed", edInbox, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { async <- err }))
	if err != nil {
		t.Fatalf("connecting as the editor with its inbox prefix: %v", err)
	}
	defer editor.Close()
	agent, err := connect("agent-h1", "h1", agInbox)
	if err != nil {
		t.Fatalf("connecting as the agent with its inbox prefix: %v", err)
	}
	defer agent.Close()

	// The whole round: a request answered, a tracepoint declared, a hit
	// published (and acknowledged) by the agent and read by the editor.
	sub, err := agent.Conn().Subscribe(subj.ProfileGet("h1"), func(m *nats.Msg) {
		m.Respond(fleet.Encode(&fleet.Profile{Host: fleet.HostInfo{Name: "h1"}}))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	agent.Conn().Flush()
	if _, err := editor.Profile(ctx, "h1"); err != nil {
		t.Fatalf("the editor asking h1: %v", err)
	}
	if err := editor.Declare(ctx, &fleet.Spec{ID: "tp-1", Location: fleet.Location{Path: "main.go", Line: 3}}); err != nil {
		t.Fatalf("declaring: %v", err)
	}
	w, err := agent.TracepointKV().WatchAll(ctx)
	if err != nil {
		t.Fatalf("the agent watching the tracepoints: %v", err)
	}
	for e := range w.Updates() {
		if e == nil {
			t.Fatal("the agent's watch has no tracepoint tp-1")
		}
		if e.Key() == "tp-1" {
			break
		}
	}
	w.Stop()
	r, err := editor.Hits(ctx, fleet.HitOptions{Replay: true})
	if err != nil {
		t.Fatalf("reading hits: %v", err)
	}
	defer r.Close()
	if _, err := agent.JetStream().Publish(ctx, subj.Trace("h1", "tp-1"), fleet.Encode(&fleet.Hit{Tracepoint: "tp-1", Host: "h1", Pid: 7})); err != nil {
		t.Fatalf("publishing a hit as the agent: %v", err)
	}
	if h, err := r.Next(ctx); err != nil || h.Pid != 7 {
		t.Fatalf("the editor reading the hit: %+v, %v", h, err)
	}
	if err := errors.Join(editor.Refused(), agent.Refused()); err != nil {
		t.Fatalf("refused with the layout's prefixes: %v", err)
	}

	// The editor may not listen where the agent's replies arrive, nor where
	// those of every client without a prefix do, nor answer into them.
	nc := editor.Conn()
	for _, subject := range []string{agInbox + ".>", "_INBOX.>"} {
		if _, err := nc.Subscribe(subject, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(agInbox+".forged", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	for _, want := range []string{
		`user "editor" may not subscribe to ` + agInbox + `.> (each user receives its replies under its own inbox prefix`,
		`user "editor" may not subscribe to _INBOX.> (each user receives its replies under its own inbox prefix`,
		`user "editor" may not publish to ` + agInbox + `.forged`,
	} {
		select {
		case err := <-async:
			wantPermissionError(t, "the editor at the agent's inbox", err, want)
		case <-ctx.Done():
			t.Fatalf("no refusal saying %s", want)
		}
	}
	// The agent cannot listen on the editor's inbox.
	if _, err := agent.Conn().Subscribe(edInbox+".>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	agent.Conn().Flush()
	wantPermissionError(t, "the agent subscribing to the editor's inbox", agent.Refused(), `user "agent-h1" may not subscribe to _INBOX_editor.>`)

	// A client without its prefix, or with another user's, is told at once
	// which to run with.
	_, err = connect("editor", "ed", "")
	wantPermissionError(t, "connecting without the inbox prefix", err, `user "editor" may not subscribe to _INBOX.`)
	wantPermissionError(t, "connecting without the inbox prefix", err, `; run with --inbox-prefix _INBOX_editor, the prefix RipTrace's layout gives this user`)
	_, err = connect("editor", "ed", agInbox)
	wantPermissionError(t, "connecting with the agent's inbox prefix", err, `user "editor" may not subscribe to _INBOX_agent-h1.`)
	wantPermissionError(t, "connecting with the agent's inbox prefix", err, `; the server does not give this user the inbox prefix _INBOX_agent-h1: run with --inbox-prefix _INBOX_editor, the prefix RipTrace's layout gives it`)
	// A prefix nats.go would refuse is refused before dialing, saying why.
	for _, bad := range []string{"_INBOX.>", "_INBOX_editor.", "my inbox"} {
		if _, err := connect("editor", "ed", bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("inbox prefix %q: ", bad)) {
			t.Errorf("connecting with the inbox prefix %q: %v, want an error naming it", bad, err)
		}
	}
}

// TestAuthConfigInboxes: the generated layout gives each user its own inbox
// prefix (by name, or nkey), or the one it is given, and no user _INBOX.>.
func TestAuthConfigInboxes(t *testing.T) {
	conf := fleet.NewSubjects("").AuthConfig([]fleet.AuthUser{
		{Name: "editor", Password: "$ED"},
		{Name: "agent-node.1", Password: "$AG", Host: "node.1"},
		{Nkey: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", Host: "nk"},
		{Name: "ci", Password: "$CI", InboxPrefix: "_INBOX.ci"},
	})
	for _, want := range []string{
		"# editor and CLI; its clients run with --inbox-prefix _INBOX_editor\n",
		"# agent of host node_1; its clients run with --inbox-prefix _INBOX_agent-node_1\n",
		`"_INBOX_editor.>"`, `"_INBOX_agent-node_1.>"`, `"_INBOX_UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4.>"`, `"_INBOX.ci.>"`,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("the layout does not say %s:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, `"_INBOX.>"`) {
		t.Errorf("a user of the layout may subscribe to every inbox:\n%s", conf)
	}
}
