package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/riptrace/riptrace/fleet"
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server", "[--listen HOST:PORT] [--data DIR]", stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "`HOST:PORT` to accept NATS clients on")
	data := fs.String("data", defaultDataDir(), "`DIR` for JetStream's file store (hits, tracepoints, status)")
	prefix := fs.String("prefix", fleet.DefaultPrefix, "subject `prefix`")
	logs := fs.Bool("v", false, "log nats-server's own messages")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("server takes no arguments, got %q", pos)}
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	s, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: *listen, DataDir: *data, Prefix: *prefix, Logs: *logs})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "riptrace server ready: %s (data in %s)\n", s.ClientURL(), *data)
	<-ctx.Done()
	fmt.Fprintln(stderr, "riptrace server: shutting down")
	s.Shutdown()
	return nil
}

// defaultDataDir follows the XDG base directory spec for state.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "riptrace")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "riptrace")
	}
	return filepath.Join(os.TempDir(), "riptrace")
}
