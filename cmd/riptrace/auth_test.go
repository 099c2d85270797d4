package main_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
)

// deployPasswords are the passwords the tests give deploy/nats.conf's
// users, through the server's environment.
var deployPasswords = map[string]string{
	"RIPTRACE_EDITOR_PASSWORD":       "editor-pw",
	"RIPTRACE_AGENT_NODE_1_PASSWORD": "node-1-pw",
	"RIPTRACE_AGENT_NODE_2_PASSWORD": "node-2-pw",
}

// startAuthServer runs `riptrace server --config deploy/nats.conf` on a free
// port and returns its URL. The test may not be parallel: the passwords
// reach the server through the environment.
func startAuthServer(t *testing.T) string {
	t.Helper()
	for k, v := range deployPasswords {
		t.Setenv(k, v)
	}
	p := start(t, "server", "--config", deployDir+"/nats.conf", "--listen", "127.0.0.1:-1", "--data", t.TempDir())
	var url string
	p.await(t, cmdTimeout, "ready line", func(stdout, _ string) bool {
		m := serverReady.FindStringSubmatch(stdout)
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return url
}

// as is how a user of deploy/nats.conf runs a command: its password and
// the inbox prefix the layout gives it.
func as(user, password string) []string {
	return []string{"--user", user, "--password", password, "--inbox-prefix", fleet.UserInboxPrefix(user)}
}

var (
	editor = as("editor", "editor-pw")
	node1  = as("agent-node-1", "node-1-pw")
)

// TestAuthLayout runs the fleet on a server loading deploy/nats.conf: an
// agent with its host's user and an editor user trace a real target end to
// end; anonymous users are refused; a user of the wrong role can neither
// read hits, nor declare tracepoints, nor answer or publish as an agent, and
// the error names the permission that is missing.
func TestAuthLayout(t *testing.T) {
	src := loopSource(t)
	loc := fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "process"))
	url := startAuthServer(t)

	// Anonymous: refused at the door.
	wantRefused(t, []string{"Authorization Violation", "the server wants credentials"}, "hosts", "--nats", url)

	wantRefused(t, []string{`as user "editor"`, "Authorization Violation", "the server refused these credentials"},
		"hosts", "--nats", url, "--user", "editor", "--password", "wrong")

	// The right users: the agent of node-1 traces, the editor reads.
	target := startTarget(t, "auth-loop")
	agent1 := start(t, append([]string{"agent", "--nats", url, "--host", "node-1", "--processes", exeName("auth-loop")}, node1...)...)
	r := run(t, cmdTimeout, append([]string{"trace", "--nats", url, "--json", "--count", "3", "--processes", exeName("auth-loop"), loc}, editor...)...)
	if r.code != 0 {
		t.Fatalf("riptrace trace as the editor: exit %d\n%s", r.code, r.stderr)
	}
	hits := decodeHits(t, r.stdout)
	if len(hits) != 3 {
		t.Fatalf("riptrace trace --count 3 as the editor printed %d hits, want 3\n%s", len(hits), r.stderr)
	}
	for _, h := range hits {
		if h.Host != "node-1" || h.Pid != target.Pid {
			t.Errorf("hit from %s pid %d, want node-1 pid %d", h.Host, h.Pid, target.Pid)
		}
	}
	if strings.Contains(agent1.Stderr(), "permission denied") {
		t.Errorf("the agent of node-1 was refused something:\n%s", agent1.Stderr())
	}

	// The agent's user may not declare tracepoints, ask agents, or read hits.
	r = run(t, cmdTimeout, append([]string{"trace", "--nats", url, "--count", "1", loc}, node1...)...)
	if r.code == 0 || !strings.Contains(r.stderr, `riptrace: opening the hit stream: permission denied: user "agent-node-1" may not publish to $JS.API.CONSUMER.CREATE.RIPTRACE_HITS.`) {
		t.Errorf("riptrace trace as an agent: exit %d, want a failure naming the refused permission:\n%s", r.code, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	agentClient, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: t.Name(), Credentials: fleet.Credentials{InboxPrefix: "_INBOX_agent-node-1"}, NATS: []nats.Option{nats.UserInfo("agent-node-1", "node-1-pw")}})
	if err != nil {
		t.Fatalf("connecting as the agent of node-1: %v", err)
	}
	defer agentClient.Close()
	wantDenied(t, "declaring as an agent", agentClient.Declare(ctx, &fleet.Spec{ID: "tp-agent", Location: fleet.Location{Path: "main.go", Line: 3}}),
		`user "agent-node-1" may not publish to $KV.riptrace_tracepoints.tp-agent (declaring and removing tracepoints is for editor and CLI users)`)
	_, err = agentClient.Hits(ctx, fleet.HitOptions{Replay: true})
	wantDenied(t, "reading hits as an agent", err, `user "agent-node-1" may not publish to $JS.API.CONSUMER.CREATE.RIPTRACE_HITS`, "(reading hits is for editor and CLI users)")

	// The agent of node-1 may not serve node-2.
	// (The agents under the wrong users manage no process: they are killed
	// when done with, as one that may not withdraw its heartbeat takes a
	// while to stop.)
	none := exeName("no-such-process")
	agent2 := start(t, append([]string{"agent", "--nats", url, "--host", "node-2", "--processes", none}, node1...)...)
	// It stops at once, naming the first of node-2's request subjects the
	// server refused it.
	refused := regexp.MustCompile(`permission denied: user "agent-node-1" may not subscribe to riptrace\.node-2\.\S+ \(only the agent of host node-2 serves its requests\)`)
	agent2.await(t, stateTimeout, "a refusal", func(_, stderr string) bool { return refused.MatchString(stderr) })
	if code := agent2.exitCode(t, stateTimeout); code != 1 {
		t.Errorf("the agent serving node-2 with node-1's user exited with %d, want 1", code)
	}
	hostsOut := run(t, cmdTimeout, append([]string{"hosts", "--nats", url, "--json"}, editor...)...)
	if strings.Contains(hostsOut.stdout, `"node-2"`) {
		t.Errorf("host node-2, served with node-1's user, is listed:\n%s", hostsOut.stdout)
	}

	// The editor may not answer as an agent, nor publish hits.
	fake := start(t, append([]string{"agent", "--nats", url, "--host", "node-1", "--processes", none}, editor...)...)
	fake.await(t, stateTimeout, "a refusal", func(_, stderr string) bool {
		return strings.Contains(stderr, `permission denied: user "editor" may not subscribe to riptrace.node-1.`) &&
			strings.Contains(stderr, "(only the agent of host node-1 serves its requests)")
	})
	fake.Cmd.Process.Kill()
	var async = make(chan error, 16)
	editorClient, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: t.Name(), Credentials: fleet.Credentials{InboxPrefix: "_INBOX_editor"}, NATS: []nats.Option{
		nats.UserInfo("editor", "editor-pw"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { async <- err }),
	}})
	if err != nil {
		t.Fatalf("connecting as the editor: %v", err)
	}
	defer editorClient.Close()
	// The editor tries the agent's half of the protocol: publishing node-1's
	// hits, then serving its requests.
	const admin = `; ask your NATS admin to grant it (README, "Auth and permissions", shows the layout RipTrace needs)`
	pub, err := editorClient.NewHitPublisher("node-1", cmdTimeout, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(pub.Msg("tp", []byte("{}"), t.Name())); err != nil {
		t.Fatal(err)
	}
	want := `permission denied: user "editor" may not publish to riptrace.node-1.hits.tp (hits are published only by the agent of host node-1)`
	select {
	case err := <-async:
		if err.Error() != want+admin {
			t.Errorf("asynchronous error %q, want %q", err, want)
		}
	case <-time.After(cmdTimeout):
		t.Fatalf("no error for: %s", want)
	}
	// On a connection of its own: ServeHost reports the connection's first
	// violation.
	server, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: t.Name(), Credentials: fleet.Credentials{User: "editor", Password: "editor-pw", InboxPrefix: "_INBOX_editor"}})
	if err != nil {
		t.Fatalf("connecting as the editor: %v", err)
	}
	defer server.Close()
	_, err = server.ServeHost("node-1", fleet.HostHandlers{}, slog.New(slog.DiscardHandler))
	// Which of the host's subjects is named first depends on when the
	// server's refusals arrive.
	refusal := regexp.MustCompile(`permission denied: user "editor" may not subscribe to riptrace\.node-1\.[a-zA-Z.]+ \(only the agent of host node-1 serves its requests\)` + regexp.QuoteMeta(admin) + `$`)
	if err == nil || !refusal.MatchString(err.Error()) {
		t.Errorf("serving node-1 as the editor: %v, want it refused as %s", err, refusal)
	}
	// The agent of node-1 still serves.
	if r := run(t, cmdTimeout, append([]string{"hosts", "--nats", url, "--json"}, editor...)...); !strings.Contains(r.stdout, `"node-1"`) {
		t.Errorf("riptrace hosts as the editor does not list node-1:\n%s\n%s", r.stdout, r.stderr)
	}
}

// TestAuthInboxes: on deploy/nats.conf each user receives replies only
// under its own inbox prefix. The editor (its prefix from the environment)
// lists the agent, which runs with its own; the editor may not listen where
// the agent's replies arrive, nor where those of clients without a prefix
// do, and receives none of them; a command or an agent run without its
// prefix fails at once, saying which to run with.
func TestAuthInboxes(t *testing.T) {
	url := startAuthServer(t)
	none := exeName("no-such-process")
	start(t, append([]string{"agent", "--nats", url, "--host", "node-1", "--processes", none}, node1...)...)

	// Without the prefix: refused, with the prefix to use.
	edBare, agBare := []string{"--user", "editor", "--password", "editor-pw"}, []string{"--user", "agent-node-1", "--password", "node-1-pw"}
	wantRefused(t, []string{`permission denied: user "editor" may not subscribe to _INBOX.`, "; run with --inbox-prefix _INBOX_editor, the prefix RipTrace's layout gives this user"},
		append([]string{"hosts", "--nats", url}, edBare...)...)
	wantRefused(t, []string{`permission denied: user "agent-node-1" may not subscribe to _INBOX.`, "; run with --inbox-prefix _INBOX_agent-node-1,"},
		append([]string{"agent", "--nats", url, "--host", "node-1", "--processes", none}, agBare...)...)
	// Another user's prefix: refused too.
	wantRefused(t, []string{`user "editor" may not subscribe to _INBOX_agent-node-1.`, "the server does not give this user the inbox prefix _INBOX_agent-node-1: run with --inbox-prefix _INBOX_editor,"},
		append([]string{"hosts", "--nats", url, "--inbox-prefix", "_INBOX_agent-node-1"}, edBare...)...)
	wantRefused(t, []string{`--inbox-prefix is not an inbox prefix: inbox prefix "_INBOX.>": it has a wildcard`}, append([]string{"hosts", "--nats", url, "--inbox-prefix", "_INBOX.>"}, edBare...)...)

	// A spy with the editor's user subscribes to the agent's inbox and to
	// the shared one: both refused, and nothing arrives while the editor's
	// `riptrace hosts` asks the agent for its profile.
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	async := make(chan error, 16)
	// A connection of the editor's user with its own prefix subscribes
	// where the others' replies arrive.
	spy, err := nats.Connect(url, nats.UserInfo("editor", "editor-pw"), nats.CustomInboxPrefix("_INBOX_editor"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { async <- err }))
	if err != nil {
		t.Fatalf("connecting as the editor with its prefix: %v", err)
	}
	defer spy.Close()
	var overheard atomic.Int64
	for _, subject := range []string{"_INBOX_agent-node-1.>", "_INBOX.>"} {
		if _, err := spy.Subscribe(subject, func(*nats.Msg) { overheard.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	spy.Flush()
	for _, subject := range []string{"_INBOX_agent-node-1.>", "_INBOX.>"} {
		select {
		case err := <-async:
			if !regexp.MustCompile(`(?i)permissions violation for subscription to "?` + regexp.QuoteMeta(subject)).MatchString(err.Error()) {
				t.Errorf("the editor subscribing to %s: %v, want a permissions violation", subject, err)
			}
		case <-ctx.Done():
			t.Fatalf("subscribing to %s as the editor was not refused", subject)
		}
	}
	// The environment gives the prefix as the flag does.
	t.Setenv("RIPTRACE_INBOX_PREFIX", "_INBOX_editor")
	awaitHostListed(t, "node-1", append([]string{"--nats", url}, edBare...)...)
	spy.Flush()
	if n := overheard.Load(); n != 0 {
		t.Errorf("the editor overheard %d replies meant for others", n)
	}
}

func wantDenied(t *testing.T, doing string, err error, want ...string) {
	t.Helper()
	var pe *fleet.PermissionError
	if !errors.As(err, &pe) {
		t.Errorf("%s: error %v, want a *fleet.PermissionError", doing, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not say %q", doing, err, w)
		}
	}
}
