package web_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/riptrace/riptrace/web"
)

// htpasswd returns an htpasswd file's text for users, name → password,
// hashed as htpasswd -B does (at bcrypt's lowest cost, for speed).
func htpasswd(t testing.TB, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	for name, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		// htpasswd -B writes the $2y$ prefix.
		fmt.Fprintf(&b, "%s:%s\n", name, strings.Replace(string(h), "$2a$", "$2y$", 1))
	}
	return b.String()
}

// withUsers gives a page the users alice and bob.
func withUsers(t testing.TB) func(*web.Options) {
	users, err := web.ParseUsers(strings.NewReader("# the test's users\n\n"+htpasswd(t, map[string]string{"alice": "alice's password", "bob": "b0b:with:colons"})), "users")
	if err != nil {
		t.Fatal(err)
	}
	return func(o *web.Options) { o.Users = users }
}

// TestBasicUsers: with users, a request carrying a user's name and
// password is served, as one with the token is; a wrong password, an
// unknown user and malformed Basic headers get 401, before routing. A
// session opened with one credential refuses another.
func TestBasicUsers(t *testing.T) {
	t.Parallel()
	p := newPage(t, "file:///nonexistent", withUsers(t))
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		what, auth string
		want       int
	}{
		{"the right user", basic("alice:alice's password"), 200},
		{"a password with colons", basic("bob:b0b:with:colons"), 200},
		{"the scheme in lower case", "basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice's password")), 200},
		{"the token", "Bearer " + p.token, 200},
		{"a wrong password", basic("alice:bob's password"), 401},
		{"another user's password", basic("bob:alice's password"), 401},
		{"an empty password", basic("alice:"), 401},
		{"an unknown user", basic("mallory:alice's password"), 401},
		{"a user name differing in case", basic("Alice:alice's password"), 401},
		{"no colon", basic("alice"), 401},
		{"bad base64", "Basic !!!not-base64", 401},
		{"no credentials after the scheme", "Basic ", 401},
		{"the scheme alone", "Basic", 401},
		{"the token as a Basic password", basic("alice:" + p.token), 401},
		{"a user's password as the token", "Bearer alice's password", 401},
		{"a wrong token", "Bearer wrong-token-of-some-length", 401},
	} {
		for _, path := range []string{"/api/config", "/api/nothing/here"} {
			req, _ := http.NewRequest("GET", p.hs.URL+path, nil)
			req.Header.Set("Authorization", c.auth)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := c.want
			if want == 200 && path != "/api/config" {
				want = 404 // routed
			}
			if resp.StatusCode != want {
				t.Errorf("GET %s with %s (%q): %d, want %d", path, c.what, c.auth, resp.StatusCode, want)
			}
			if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") != `Bearer realm="riptrace"` {
				t.Errorf("401 with WWW-Authenticate %q: want the Bearer challenge alone, so that browsers open no dialog of their own", resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	var cfg struct{ User string }
	p.user, p.password = "alice", "alice's password"
	if err := p.get("/api/config", &cfg); err != nil || cfg.User != "alice" {
		t.Errorf("config as alice = %+v (%v), want user alice", cfg, err)
	}
	// alice's session, then the token with the same session id.
	if status, body := p.do("POST", "/api/tracepoints", web.TracepointRequest{}); status != http.StatusBadRequest {
		t.Fatalf("alice's POST of an empty tracepoint: %d %s, want 400", status, body)
	}
	p.user = ""
	if status, body := p.do("POST", "/api/tracepoints", web.TracepointRequest{}); status != http.StatusForbidden || !strings.Contains(string(body), "another user") {
		t.Errorf("the token on alice's session: %d %s, want 403", status, body)
	}
}

// TestParseUsers: a users file that cannot be read right stops the
// server at start, saying which line and what to do.
func TestParseUsers(t *testing.T) {
	t.Parallel()
	good := htpasswd(t, map[string]string{"alice": "pw"})
	for _, c := range []struct{ text, want string }{
		{"", "lists no users"},
		{"# only a comment\n", "lists no users"},
		{"alice\n", "users:1: no colon"},
		{good + good, "users:2: user alice is listed twice"},
		{"al ice:" + strings.TrimPrefix(good, "alice:"), "users:1: user name \"al ice\""},
		{"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "is not bcrypt"},
		{"alice:$apr1$salt$hash\n", "is not bcrypt"},
		{"alice:plain-password\n", "is not bcrypt"},
	} {
		_, err := web.ParseUsers(strings.NewReader(c.text), "users")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseUsers(%q) = %v, want an error with %q", c.text, err, c.want)
		}
	}
	u, err := web.ParseUsers(strings.NewReader(good), "users")
	if err != nil {
		t.Fatal(err)
	}
	// Twice: the second answer comes from the cache of good credentials,
	// which must not take a wrong password for the right one.
	for range 2 {
		if !u.Check("alice", "pw") || u.Check("alice", "pw2") || u.Check("bob", "pw") {
			t.Errorf("Check: want alice's password only")
		}
	}
}
