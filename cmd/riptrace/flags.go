package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// strings is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// connFlags are the NATS flags every client command takes: where, and as
// whom.
type connFlags struct {
	url    string
	prefix string
	cred   fleet.Credentials
}

func (c *connFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("RIPTRACE_NATS")
	if def == "" {
		def = fleet.DefaultURL
	}
	fs.StringVar(&c.url, "nats", def, "NATS server `URL`, or several comma-separated: the members of a cluster, tried in turn (env RIPTRACE_NATS)")
	fs.StringVar(&c.prefix, "prefix", fleet.DefaultPrefix, "subject `prefix` shared by every RipTrace piece")
	fs.StringVar(&c.cred.InboxPrefix, "inbox-prefix", os.Getenv("RIPTRACE_INBOX_PREFIX"), "receive replies under `PREFIX` instead of _INBOX: the one the server's permissions give this user (_INBOX_<user> in deploy/nats.conf; env RIPTRACE_INBOX_PREFIX)")
	fs.StringVar(&c.cred.Creds, "creds", os.Getenv("RIPTRACE_CREDS"), "NATS credentials `FILE` (JWT and nkey seed; env RIPTRACE_CREDS)")
	fs.StringVar(&c.cred.NKey, "nkey", "", "NATS nkey seed `FILE`")
	fs.StringVar(&c.cred.User, "user", "", "NATS `USER` (with --password)")
	fs.StringVar(&c.cred.Password, "password", os.Getenv("RIPTRACE_PASSWORD"), "NATS `PASSWORD` (env RIPTRACE_PASSWORD)")
	fs.StringVar(&c.cred.Token, "token", os.Getenv("RIPTRACE_TOKEN"), "NATS auth `TOKEN` (env RIPTRACE_TOKEN)")
	fs.StringVar(&c.cred.TLS.CA, "tls-ca", "", "CA certificate `FILE` to verify the NATS server")
	fs.StringVar(&c.cred.TLS.Cert, "tls-cert", "", "client certificate `FILE` (with --tls-key)")
	fs.StringVar(&c.cred.TLS.Key, "tls-key", "", "client key `FILE` (with --tls-cert)")
}

// credentialFlag spells a field of fleet.Credentials as its flag.
func credentialFlag(field string) string {
	return "--" + strings.NewReplacer(".", "-", "inboxPrefix", "inbox-prefix").Replace(field)
}

// check refuses, as a usage error, credentials that cannot work.
func (c *connFlags) check() error {
	if err := c.cred.Check(credentialFlag); err != nil {
		return credentialUsage(err)
	}
	return nil
}

// credentialUsage turns a *fleet.CredentialError into a usage error that
// names the flag; other errors are returned as they are.
func credentialUsage(err error) error {
	var ce *fleet.CredentialError
	if errors.As(err, &ce) {
		return usageError{credentialFlag(ce.Field) + " " + ce.Msg}
	}
	return err
}

// connect dials the fleet with the flags' credentials.
func (c *connFlags) connect(ctx context.Context, name string) (*fleet.Client, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	client, err := fleet.Connect(ctx, c.url, fleet.ClientOptions{Prefix: c.prefix, Name: name, Credentials: c.cred})
	return client, credentialUsage(err)
}

func newFlagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: riptrace %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and positional arguments in any order, so that
// `riptrace trace main.go:42 --count 5` works as users type it.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
