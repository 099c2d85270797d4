package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

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
	inbox  string // the inbox prefix the server's permissions give the user

	creds, nkey, user, password, token string
	tlsCA, tlsCert, tlsKey             string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("RIPTRACE_NATS")
	if def == "" {
		def = fleet.DefaultURL
	}
	fs.StringVar(&c.url, "nats", def, "NATS server `URL` (env RIPTRACE_NATS)")
	fs.StringVar(&c.prefix, "prefix", fleet.DefaultPrefix, "subject `prefix` shared by every RipTrace piece")
	fs.StringVar(&c.inbox, "inbox-prefix", os.Getenv("RIPTRACE_INBOX_PREFIX"), "receive replies under `PREFIX` instead of _INBOX: the one the server's permissions give this user (_INBOX_<user> in deploy/nats.conf; env RIPTRACE_INBOX_PREFIX)")
	fs.StringVar(&c.creds, "creds", os.Getenv("RIPTRACE_CREDS"), "NATS credentials `FILE` (JWT and nkey seed; env RIPTRACE_CREDS)")
	fs.StringVar(&c.nkey, "nkey", "", "NATS nkey seed `FILE`")
	fs.StringVar(&c.user, "user", "", "NATS `USER` (with --password)")
	fs.StringVar(&c.password, "password", os.Getenv("RIPTRACE_PASSWORD"), "NATS `PASSWORD` (env RIPTRACE_PASSWORD)")
	fs.StringVar(&c.token, "token", os.Getenv("RIPTRACE_TOKEN"), "NATS auth `TOKEN` (env RIPTRACE_TOKEN)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA certificate `FILE` to verify the NATS server")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate `FILE` (with --tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client key `FILE` (with --tls-cert)")
}

// connect dials the fleet with the flags' credentials.
func (c *connFlags) connect(ctx context.Context, name string) (*fleet.Client, error) {
	if c.inbox != "" {
		if err := fleet.CheckInboxPrefix(c.inbox); err != nil {
			return nil, usageError{"--inbox-prefix: " + err.Error()}
		}
	}
	var opts []nats.Option
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(c.nkey)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--nkey %s: %v", c.nkey, err)}
		}
		opts = append(opts, o)
	}
	if c.user != "" {
		opts = append(opts, nats.UserInfo(c.user, c.password))
	}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, usageError{"--tls-cert and --tls-key go together"}
	}
	if c.tlsCert != "" {
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	return fleet.Connect(ctx, c.url, fleet.ClientOptions{Prefix: c.prefix, Name: name, NATS: opts, InboxPrefix: c.inbox})
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
