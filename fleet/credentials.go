package fleet

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// Credentials say as whom a client logs in to NATS and how it trusts the
// server. The CLI's flags, the agent's configuration file, the debug
// adapter's attach attributes and the language server's settings all fill
// one, and Connect turns it into nats.go options. Empty fields are unused.
type Credentials struct {
	Creds    string // a .creds file: a user JWT and its nkey seed
	NKey     string // an nkey seed file
	User     string
	Password string // with User
	Token    string
	TLS      TLSFiles
	// InboxPrefix is where the connection receives replies, in place of
	// _INBOX: the prefix the server's permissions give this user (see
	// AuthUser.InboxPrefix). Empty: _INBOX.
	InboxPrefix string
}

// TLSFiles name the CA that verifies the server, and the client
// certificate and its key.
type TLSFiles struct {
	CA   string `json:"ca,omitempty" yaml:"ca"`
	Cert string `json:"cert,omitempty" yaml:"cert"`
	Key  string `json:"key,omitempty" yaml:"key"`
}

// CredentialError is a credential that cannot work. Field names it as
// Credentials' fields are named in the debug adapter's attach attributes
// ("nkey", "tls.cert", "inboxPrefix"), so each front end can name it in
// its own spelling.
type CredentialError struct {
	Field string
	Msg   string // what is wrong and what to do, to follow the field's name
}

func (e *CredentialError) Error() string { return e.Field + ": " + e.Msg }

// Check reports the first credential that cannot work without reading any
// file. name spells a field as the caller's user knows it ("--tls-key",
// "nats.tls.key"); nil keeps the attribute names.
func (c *Credentials) Check(name func(field string) string) error {
	if name == nil {
		name = func(f string) string { return f }
	}
	if c.InboxPrefix != "" {
		if err := CheckInboxPrefix(c.InboxPrefix); err != nil {
			return &CredentialError{"inboxPrefix", "is not an inbox prefix: " + err.Error()}
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		set, missing := "tls.cert", "tls.key"
		if c.TLS.Cert == "" {
			set, missing = missing, set
		}
		return &CredentialError{set, fmt.Sprintf("set without %s: the client certificate and its key go together", name(missing))}
	}
	if c.Password != "" && c.User == "" {
		return &CredentialError{"password", fmt.Sprintf("set without %s: add %s, or use %s for token authentication", name("user"), name("user"), name("token"))}
	}
	return nil
}

// options checks c, reads the files it names and returns the nats.go
// options that log in with it. Errors are *CredentialError.
func (c *Credentials) options() ([]nats.Option, error) {
	if err := c.Check(nil); err != nil {
		return nil, err
	}
	for _, f := range []struct{ field, file string }{{"creds", c.Creds}, {"nkey", c.NKey}, {"tls.ca", c.TLS.CA}, {"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}} {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil {
			return nil, &CredentialError{f.field, fmt.Sprintf("names %s, which cannot be read (%v): give the path of an existing file", f.file, err)}
		}
	}
	var opts []nats.Option
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, &CredentialError{"nkey", fmt.Sprintf("names %s, which is not an nkey seed file (%v): give the seed file of the user (it starts with SU)", c.NKey, err)}
		}
		opts = append(opts, o)
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CA))
	}
	if c.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(c.TLS.Cert, c.TLS.Key))
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	return opts, nil
}
