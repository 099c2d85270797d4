package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

var anyServerReady = regexp.MustCompile(`(?m)^riptrace server ready: ((?:nats|tls)://\S+) `)

// startServerConfig runs `riptrace server --config` with conf on a free
// port and returns its URL.
func startServerConfig(t *testing.T, conf string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "server", "--config", file, "--listen", "127.0.0.1:-1", "--data", t.TempDir())
	var url string
	p.await(t, cmdTimeout, "ready line", func(stdout, _ string) bool {
		m := anyServerReady.FindStringSubmatch(stdout)
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return url
}

// writeFile writes data into a new file of the test and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hostsListed runs `riptrace hosts --json` with args until it lists host.
func awaitHostListed(t *testing.T, host string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(stateTimeout)
	for {
		r := run(t, cmdTimeout, append([]string{"hosts", "--json"}, args...)...)
		if r.code == 0 && strings.Contains(r.stdout, fmt.Sprintf("%q", host)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("riptrace hosts %q does not list %s within %v: exit %d\n%s%s", args, host, stateTimeout, r.code, r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wantRefused runs `riptrace args...` and checks that it fails saying each
// of want.
func wantRefused(t *testing.T, want []string, args ...string) {
	t.Helper()
	r := run(t, cmdTimeout, args...)
	if r.code == 0 {
		t.Errorf("riptrace %q succeeded, want a failure", args)
		return
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("riptrace %q: stderr does not say %q:\n%s", args, w, r.stderr)
		}
	}
}

// TestCredentialKinds: the permission layout with nkey users, with users of
// an operator's JWTs (creds files), and TLS client certificates, each
// through the flags the commands take.
func TestCredentialKinds(t *testing.T) {
	t.Parallel()
	subj := fleet.NewSubjects("")
	none := exeName("no-such-process")

	t.Run("nkey", func(t *testing.T) {
		t.Parallel()
		edPub, edSeed := fleettest.NkeyUser(t)
		agPub, agSeed := fleettest.NkeyUser(t)
		url := startServerConfig(t, subj.AuthConfig([]fleet.AuthUser{{Nkey: edPub}, {Nkey: agPub, Host: "nk-host"}}))
		wantRefused(t, []string{"Authorization Violation"}, "hosts", "--nats", url)
		// An nkey user's inbox prefix is named after its public key.
		edInbox, agInbox := fleet.UserInboxPrefix(edPub), fleet.UserInboxPrefix(agPub)
		wantRefused(t, []string{"run with --inbox-prefix " + edInbox + ","}, "hosts", "--nats", url, "--nkey", edSeed)
		start(t, "agent", "--nats", url, "--nkey", agSeed, "--inbox-prefix", agInbox, "--host", "nk-host", "--processes", none)
		awaitHostListed(t, "nk-host", "--nats", url, "--nkey", edSeed, "--inbox-prefix", edInbox)
		wantRefused(t, []string{"permission denied: nkey " + agPub + " may not publish to $JS.API.CONSUMER.CREATE.KV_riptrace_hosts."},
			"hosts", "--nats", url, "--nkey", agSeed, "--inbox-prefix", agInbox)
	})

	t.Run("creds", func(t *testing.T) {
		t.Parallel()
		op, opPub := newKey(t, nkeys.CreateOperator)
		acc, accPub := newKey(t, nkeys.CreateAccount)
		oc := jwt.NewOperatorClaims(opPub)
		oc.Name = "riptrace-test"
		opJWT := encode(t, oc, op)
		ac := jwt.NewAccountClaims(accPub)
		ac.Name = "RIPTRACE"
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		accJWT := encode(t, ac, op)
		user := func(name string, p *fleet.Permissions) string {
			u, uPub := newKey(t, nkeys.CreateUser)
			uc := jwt.NewUserClaims(uPub)
			uc.Name = name
			if p != nil {
				uc.Pub.Allow.Add(p.Publish...)
				uc.Sub.Allow.Add(p.Subscribe...)
				if p.Responses {
					uc.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
				}
			}
			seed, err := u.Seed()
			if err != nil {
				t.Fatal(err)
			}
			creds, err := jwt.FormatUserConfig(encode(t, uc, acc), seed)
			if err != nil {
				t.Fatal(err)
			}
			return writeFile(t, name+".creds", creds)
		}
		// Each user gets its own inbox, as AuthConfig gives them.
		ed, ag := subj.EditorPermissions().WithInbox(fleet.UserInboxPrefix("editor")), subj.AgentPermissions("jwt-host").WithInbox(fleet.UserInboxPrefix("agent-jwt-host"))
		admin, editor, agent := user("admin", nil), user("editor", &ed), user("agent-jwt-host", &ag)
		// JetStream in operator mode needs a system account.
		_, sysPub := newKey(t, nkeys.CreateAccount)
		sc := jwt.NewAccountClaims(sysPub)
		sc.Name = "SYS"
		sysJWT := encode(t, sc, op)
		url := startServerConfig(t, fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n", opJWT, sysPub, accPub, accJWT, sysPub, sysJWT))
		wantRefused(t, []string{"Authorization Violation"}, "hosts", "--nats", url)
		// In operator mode the server has no user of its own: the first
		// user who may create the stream and buckets does.
		wantRefused(t, []string{"looking up the hit stream RIPTRACE_HITS: it does not exist"}, "hosts", "--nats", url, "--creds", editor, "--inbox-prefix", "_INBOX_editor")
		if r := run(t, cmdTimeout, "hosts", "--nats", url, "--creds", admin); r.code != 0 {
			t.Fatalf("riptrace hosts as the account's admin: exit %d\n%s", r.code, r.stderr)
		}
		// The prefix to use is named after the user's name in its JWT.
		wantRefused(t, []string{"run with --inbox-prefix _INBOX_editor,"}, "hosts", "--nats", url, "--creds", editor)
		start(t, "agent", "--nats", url, "--creds", agent, "--inbox-prefix", "_INBOX_agent-jwt-host", "--host", "jwt-host", "--processes", none)
		awaitHostListed(t, "jwt-host", "--nats", url, "--creds", editor, "--inbox-prefix", "_INBOX_editor")
		wantRefused(t, []string{`permission denied: user "agent-jwt-host" (U`, "may not publish to $JS.API.CONSUMER.CREATE.KV_riptrace_hosts."},
			"hosts", "--nats", url, "--creds", agent, "--inbox-prefix", "_INBOX_agent-jwt-host")
	})

	t.Run("tls", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		ca := newCA(t, dir)
		ca.issue(t, dir, "server", "riptrace-server", true)
		ca.issue(t, dir, "editor", "riptrace-editor", false)
		ca.issue(t, dir, "agent", "riptrace-agent-tls-host", false)
		conf := fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify_and_map: true\n}\n",
			filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "ca.pem"))
		conf += subj.AuthConfig([]fleet.AuthUser{{Name: "CN=riptrace-editor"}, {Name: "CN=riptrace-agent-tls-host", Host: "tls-host"}})
		url := startServerConfig(t, conf)
		as := func(who string) []string {
			// A certificate's user is named after its subject; so is its inbox.
			return []string{"--nats", url, "--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, who+".pem"), "--tls-key", filepath.Join(dir, who+"-key.pem"),
				"--inbox-prefix", fleet.UserInboxPrefix("CN=riptrace-" + map[string]string{"editor": "editor", "agent": "agent-tls-host"}[who])}
		}
		// Without a client certificate: refused (the server's "certificate
		// required" alert may arrive after the client sees the connection
		// closed), with the TLS flags to check.
		wantRefused(t, []string{"a TLS failure", "--tls-cert"}, "hosts", "--nats", url, "--tls-ca", filepath.Join(dir, "ca.pem"))
		start(t, append([]string{"agent", "--host", "tls-host", "--processes", none}, as("agent")...)...)
		awaitHostListed(t, "tls-host", as("editor")...)
		wantRefused(t, []string{`permission denied: certificate "CN=riptrace-agent-tls-host" may not publish to $JS.API.CONSUMER.CREATE.KV_riptrace_hosts.`},
			append([]string{"hosts"}, as("agent")...)...)
	})
}

func newKey(t *testing.T, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

func encode(t *testing.T, c interface {
	Encode(nkeys.KeyPair) (string, error)
}, kp nkeys.KeyPair) string {
	t.Helper()
	s, err := c.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA makes a certificate authority and writes its certificate to
// dir/ca.pem.
func newCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "riptrace test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	return &testCA{cert: cert, key: key}
}

// issue writes dir/name.pem and dir/name-key.pem: a certificate for cn, a
// server's for 127.0.0.1 or a client's.
func (ca *testCA) issue(t *testing.T, dir, name, cn string, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
