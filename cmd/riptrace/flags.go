package main

import (
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

// connFlags are the NATS flags every client command takes.
type connFlags struct {
	url    string
	prefix string
}

func (c *connFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("RIPTRACE_NATS")
	if def == "" {
		def = fleet.DefaultURL
	}
	fs.StringVar(&c.url, "nats", def, "NATS server `URL` (env RIPTRACE_NATS)")
	fs.StringVar(&c.prefix, "prefix", fleet.DefaultPrefix, "subject `prefix` shared by every RipTrace piece")
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
