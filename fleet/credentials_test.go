package fleet_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// TestCredentialsCheck: credentials that cannot work are refused naming the
// field in the caller's spelling, before any file is read or server dialled.
func TestCredentialsCheck(t *testing.T) {
	flag := func(f string) string { return "--" + strings.ReplaceAll(f, ".", "-") }
	for _, tc := range []struct {
		cred        fleet.Credentials
		field, says string
	}{
		{fleet.Credentials{TLS: fleet.TLSFiles{Cert: "c.pem"}}, "tls.cert", "set without --tls-key"},
		{fleet.Credentials{TLS: fleet.TLSFiles{Key: "k.pem"}}, "tls.key", "set without --tls-cert"},
		{fleet.Credentials{Password: "pw"}, "password", "add --user, or use --token"},
		{fleet.Credentials{InboxPrefix: "_INBOX.>"}, "inboxPrefix", "wildcard"},
	} {
		err := tc.cred.Check(flag)
		var ce *fleet.CredentialError
		if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(ce.Msg, tc.says) {
			t.Errorf("Check(%+v) = %v, want a CredentialError on %s saying %q", tc.cred, err, tc.field, tc.says)
		}
	}
	ok := fleet.Credentials{User: "alice", Password: "pw", TLS: fleet.TLSFiles{Cert: "c.pem", Key: "k.pem"}, InboxPrefix: "_INBOX_alice"}
	if err := ok.Check(nil); err != nil {
		t.Errorf("Check(%+v) = %v, want nil", ok, err)
	}
}

// TestConnectCredentialFiles: Connect names the credential whose file is
// missing or is not what it should be, before dialling.
func TestConnectCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	notSeed := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(notSeed, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cred        fleet.Credentials
		field, says string
	}{
		{fleet.Credentials{Creds: filepath.Join(dir, "none.creds")}, "creds", "give the path of an existing file"},
		{fleet.Credentials{TLS: fleet.TLSFiles{CA: filepath.Join(dir, "none.pem")}}, "tls.ca", "give the path of an existing file"},
		{fleet.Credentials{NKey: notSeed}, "nkey", "not an nkey seed file"},
	} {
		// Nothing listens on port 1: an error about dialling would mean
		// the files were not checked first.
		_, err := fleet.Connect(context.Background(), "nats://127.0.0.1:1", fleet.ClientOptions{Credentials: tc.cred})
		var ce *fleet.CredentialError
		if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(ce.Msg, tc.says) {
			t.Errorf("Connect with %+v: %v, want a CredentialError on %s saying %q", tc.cred, err, tc.field, tc.says)
		}
	}
}
