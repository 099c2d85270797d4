package lsp_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/lsp"
)

// TestConfiguration: hits already in the stream are replayed at start;
// the hosts glob of initializationOptions filters them, and
// workspace/didChangeConfiguration widens it. Hits name the file as a
// -trimpath build does (module path + path in module).
func TestConfiguration(t *testing.T) {
	t.Parallel()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	dir := t.TempDir()
	src := "package main\n\nfunc main() {\n\tcharge(1)\n}\n"
	for name, content := range map[string]string{"go.mod": "module example.com/shop\n", "cmd/pay/main.go": src} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, host := range []string{"pay-a", "pay-b", "pay-b"} {
		h := fleet.Hit{Tracepoint: "t", Host: host, Pid: 1, Process: fleet.ProcessRef{Exe: "pay"}, File: "example.com/shop/cmd/pay/main.go", Line: 4,
			Args: []fleet.Variable{{Name: "amount", Type: "int", Value: "1"}}}
		if err := c.PublishHit(ctx(t), &h); err != nil {
			t.Fatal(err)
		}
	}

	sess := startSession(t, lsp.Options{Log: testLogger(t)})
	// 1 >> initialize with hosts ["pay-a"]
	sess.initialize(dir, map[string]any{"nats": s.ClientURL(), "hosts": []string{"pay-a"}})
	u := uri.File(filepath.Join(dir, "cmd/pay/main.go"))
	// 2 >> codeLens, << one host's hit, replayed
	sess.awaitLens(u, 3, regexp.MustCompile(`^● 1 hit · 1 host · last \d+s ago$`))

	// 3 >> didChangeConfiguration {"riptrace": {"hosts": ["pay-*"]}}
	if err := sess.server.DidChangeConfiguration(ctx(t), &protocol.DidChangeConfigurationParams{Settings: mustJSON(map[string]any{"riptrace": map[string]any{"hosts": []string{"pay-*"}}})}); err != nil {
		t.Fatal(err)
	}
	// 4 >> codeLens, << every host's hits, counted once
	sess.awaitLens(u, 3, regexp.MustCompile(`^● 3 hits · 2 hosts · `))

	// 5 >> didChangeConfiguration with a bad history: refused, kept.
	err := sess.server.DidChangeConfiguration(ctx(t), &protocol.DidChangeConfigurationParams{Settings: mustJSON(map[string]any{"history": "soon"})})
	if err != nil {
		t.Fatalf("a notification's error must not reach the client: %v", err)
	}
	select {
	case msg := <-sess.client.messages:
		if !regexp.MustCompile(`history "soon" is not a duration`).MatchString(msg) {
			t.Errorf("showMessage %q, want it to say the history is not a duration", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no window/showMessage about the bad setting within 10s")
	}
	sess.awaitLens(u, 3, regexp.MustCompile(`^● 3 hits · 2 hosts · `))
}

// shopServer starts a fleet server with opts and, logged in with cred,
// stores a hit of host pay-a on line 4 of the main.go of module
// example.com/shop, which it writes. It returns the server's URL and the
// module's directory.
func shopServer(t *testing.T, opts *server.Options, cred fleet.Credentials) (url, dir string) {
	t.Helper()
	s, err := fleet.StartServerOptions(ctx(t), opts, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	c, err := fleet.Connect(ctx(t), s.ClientURL(), fleet.ClientOptions{Name: t.Name(), Credentials: cred})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir = t.TempDir()
	for name, content := range map[string]string{"go.mod": "module example.com/shop\n", "main.go": "package main\n\nfunc main() {\n\tcharge(1)\n}\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := fleet.Hit{Tracepoint: "t", Host: "pay-a", Pid: 1, Process: fleet.ProcessRef{Exe: "pay"}, File: "example.com/shop/main.go", Line: 4}
	if err := c.PublishHit(ctx(t), &h); err != nil {
		t.Fatal(err)
	}
	return s.ClientURL(), dir
}

// TestInboxPrefix: on a server that gives the user an inbox prefix of its
// own, the server without the inboxPrefix setting says which to set; with
// it, hits are shown.
func TestInboxPrefix(t *testing.T) {
	t.Parallel()
	prefix := fleet.UserInboxPrefix("alice")
	opts := &server.Options{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, NoAuthUser: "alice",
		Users: []*server.User{{Username: "alice", Password: "s3cret", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{prefix + ".>"}},
		}}}}
	url, dir := shopServer(t, opts, fleet.Credentials{InboxPrefix: prefix})

	// 1 >> initialize without inboxPrefix (as alice, the server's no_auth_user), << showMessage naming the setting
	sess := startSession(t, lsp.Options{Log: testLogger(t)})
	sess.initialize(dir, map[string]any{"nats": url})
	select {
	case msg := <-sess.client.messages:
		if !regexp.MustCompile(`may not subscribe to _INBOX\..*run with --inbox-prefix _INBOX_<user>.*inboxPrefix in the editor's settings`).MatchString(msg) {
			t.Errorf("showMessage %q, want it to name the inbox prefix to set", msg)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no window/showMessage about the inbox within 20s")
	}
	// 2 >> didChangeConfiguration {"inboxPrefix": "_INBOX_alice"}
	if err := sess.server.DidChangeConfiguration(ctx(t), &protocol.DidChangeConfigurationParams{Settings: mustJSON(map[string]any{"inboxPrefix": prefix})}); err != nil {
		t.Fatal(err)
	}
	// 3 >> codeLens, << the hit, replayed
	sess.awaitLens(uri.File(filepath.Join(dir, "main.go")), 3, regexp.MustCompile(`^● 1 hit · 1 host · `))
}

// TestCredentials: the server logs in with each kind of NATS credential
// the command line takes (user and password, token, nkey seed file); a
// certificate without its key is refused naming both settings.
func TestCredentials(t *testing.T) {
	t.Parallel()
	pub, seedFile := fleettest.NkeyUser(t)
	for _, tc := range []struct {
		name     string
		server   func(*server.Options)
		settings map[string]any
		cred     fleet.Credentials
	}{
		{"user", func(o *server.Options) { o.Username, o.Password = "alice", "s3cret" }, map[string]any{"user": "alice", "password": "s3cret"}, fleet.Credentials{User: "alice", Password: "s3cret"}},
		{"token", func(o *server.Options) { o.Authorization = "t0ken" }, map[string]any{"token": "t0ken"}, fleet.Credentials{Token: "t0ken"}},
		{"nkey", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} }, map[string]any{"nkey": seedFile}, fleet.Credentials{NKey: seedFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := &server.Options{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
			tc.server(opts)
			url, dir := shopServer(t, opts, tc.cred)

			// 1 >> initialize without credentials, << showMessage: the server wants them
			sess := startSession(t, lsp.Options{Log: testLogger(t)})
			sess.initialize(dir, map[string]any{"nats": url})
			select {
			case msg := <-sess.client.messages:
				if !regexp.MustCompile(`(?i)authorization`).MatchString(msg) {
					t.Errorf("showMessage %q, want it to say the server refused an anonymous user", msg)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no window/showMessage about the credentials within 20s")
			}
			// 2 >> didChangeConfiguration with the credentials
			if err := sess.server.DidChangeConfiguration(ctx(t), &protocol.DidChangeConfigurationParams{Settings: mustJSON(tc.settings)}); err != nil {
				t.Fatal(err)
			}
			// 3 >> codeLens, << the hit, replayed
			sess.awaitLens(uri.File(filepath.Join(dir, "main.go")), 3, regexp.MustCompile(`^● 1 hit · 1 host · `))
		})
	}
	t.Run("certWithoutKey", func(t *testing.T) {
		t.Parallel()
		sess := startSession(t, lsp.Options{Log: testLogger(t)})
		sess.initialize(t.TempDir(), map[string]any{"nats": "nats://127.0.0.1:1"})
		// 1 >> didChangeConfiguration {"tls": {"cert": …}}, << showMessage naming both settings
		if err := sess.server.DidChangeConfiguration(ctx(t), &protocol.DidChangeConfigurationParams{Settings: mustJSON(map[string]any{"tls": map[string]any{"cert": "/etc/me.pem"}})}); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(20 * time.Second)
		for {
			select {
			case msg := <-sess.client.messages:
				if regexp.MustCompile(`tls\.cert.*set without tls\.key`).MatchString(msg) {
					return
				}
			case <-deadline:
				t.Fatal("no window/showMessage about tls.cert without tls.key within 20s")
			}
		}
	})
}
