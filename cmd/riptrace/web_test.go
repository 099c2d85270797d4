package main_test

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

var webReady = regexp.MustCompile(`(?m)^riptrace web page: (http://\S+/)`)

// TestServerUI: riptrace server --ui serves the page on loopback with the
// token of --ui-token-file, answers 401 without it, and --ui-readonly
// refuses changes.
func TestServerUI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	token := "a-token-of-the-test-long-enough"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "server", "--listen", "127.0.0.1:-1", "--data", dir, "--ui", "0", "--ui-token-file", tokenFile, "--ui-readonly")
	var url string
	p.await(t, cmdTimeout, "the web page's line", func(stdout, _ string) bool {
		m := webReady.FindStringSubmatch(stdout)
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.Contains(p.Stdout(), token) {
		t.Errorf("page at %s, stdout %q: want loopback, and the token of the file not printed", url, p.Stdout())
	}
	get := func(method, path, tok string) int {
		req, _ := http.NewRequest(method, url+path, strings.NewReader(`{"module":"m"}`))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path, tok string
		want              int
	}{
		{"GET", "api/fleet", "", 401},
		{"GET", "api/fleet", "wrong", 401},
		{"GET", "api/fleet", token, 200},
		{"POST", "api/fetch", token, 403},
		{"GET", "", "", 200},
	} {
		if got := get(c.method, c.path, c.tok); got != c.want {
			t.Errorf("%s /%s with token %q: %d, want %d", c.method, c.path, c.tok, got, c.want)
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exitCode(t, cmdTimeout); code != 0 {
		t.Errorf("riptrace server exited %d after SIGTERM, want 0", code)
	}
}
