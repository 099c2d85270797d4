package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var webReady = regexp.MustCompile(`(?m)^riptrace web page: (https?://\S+/)`)

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

// TestServerUITLS: with --ui-tls-cert and --ui-tls-key the page is served
// over HTTPS only, and the token is still required.
func TestServerUITLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	p := start(t, "server", "--listen", "127.0.0.1:-1", "--data", dir, "--ui", "127.0.0.1:0", "--ui-tls-cert", certFile, "--ui-tls-key", keyFile)
	var url, token string
	p.await(t, cmdTimeout, "the web page's line", func(stdout, _ string) bool {
		m := regexp.MustCompile(`(?m)^riptrace web page: (https://\S+/)#token=(\S+)`).FindStringSubmatch(stdout)
		if m != nil {
			url, token = m[1], m[2]
		}
		return m != nil
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, c := range []struct {
		tok  string
		want int
	}{{"", 401}, {token, 200}} {
		req, _ := http.NewRequest("GET", url+"api/fleet", nil)
		if c.tok != "" {
			req.Header.Set("Authorization", "Bearer "+c.tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET /api/fleet over HTTPS with token %q: %d, want %d", c.tok, resp.StatusCode, c.want)
		}
	}
	if resp, err := http.Get(strings.Replace(url, "https://", "http://", 1)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP on the TLS port answered 200")
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "riptrace test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServerUIUsers: with --ui-users a user signs in with its name and
// password on loopback; off loopback without TLS the server refuses to
// start, saying why and what to do.
func TestServerUIUsers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("alice's password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, cmdTimeout, "server", "--listen", "127.0.0.1:-1", "--data", t.TempDir(), "--ui", "0.0.0.0:0", "--ui-users", users)
	if r.code != 2 || !strings.Contains(r.stderr, "--ui-users on 0.0.0.0:0 without TLS would send passwords in the clear") || !strings.Contains(r.stderr, "--ui-tls-cert") {
		t.Errorf("--ui-users on 0.0.0.0 over HTTP: exit %d, stderr %q, want 2 and why", r.code, r.stderr)
	}
	p := start(t, "server", "--listen", "127.0.0.1:-1", "--data", dir, "--ui", "0", "--ui-users", users)
	var url string
	p.await(t, cmdTimeout, "the web page's line", func(stdout, _ string) bool {
		m := webReady.FindStringSubmatch(stdout)
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	for _, c := range []struct {
		password string
		want     int
	}{{"alice's password", 200}, {"wrong", 401}} {
		req, _ := http.NewRequest("GET", url+"api/fleet", nil)
		req.SetBasicAuth("alice", c.password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET /api/fleet as alice with password %q: %d, want %d", c.password, resp.StatusCode, c.want)
		}
	}
}
