package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/riptrace/riptrace/fleet"
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server", "[--listen HOST:PORT] [--data DIR] [--config FILE] [--ui ADDR]", stderr)
	var ui uiFlags
	ui.register(fs)
	listen := fs.String("listen", "127.0.0.1:4222", "`HOST:PORT` to accept NATS clients on")
	data := fs.String("data", defaultDataDir(), "`DIR` for JetStream's file store (hits, tracepoints, status)")
	prefix := fs.String("prefix", fleet.DefaultPrefix, "subject `prefix`")
	logs := fs.Bool("v", false, "log nats-server's own messages")
	config := fs.String("config", "", "nats-server configuration `FILE` (users, permissions, TLS, accounts); --listen and --data, when given, override its listen and jetstream store_dir")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("server takes no arguments, got %q", pos)}
	}
	var s *fleet.Server
	var err error
	if *config != "" {
		set := make(map[string]bool)
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		opts, oerr := serverOptions(*config, *listen, *data, set["listen"], set["data"], *logs)
		if oerr != nil {
			return oerr
		}
		*data = opts.StoreDir
		s, err = fleet.StartServerOptions(ctx, opts, *prefix)
	} else {
		if err = os.MkdirAll(*data, 0o700); err != nil {
			return fmt.Errorf("creating data directory: %w", err)
		}
		s, err = fleet.StartServer(ctx, fleet.ServerConfig{Listen: *listen, DataDir: *data, Prefix: *prefix, Logs: *logs})
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "riptrace server ready: %s (data in %s)\n", s.ClientURL(), *data)
	if ui.addr != "" {
		stop, err := startUI(ctx, &ui, s, *prefix, *data, stdout, stderr)
		if err != nil {
			s.Shutdown()
			return err
		}
		defer s.Shutdown()
		<-ctx.Done()
		fmt.Fprintln(stderr, "riptrace server: shutting down")
		stop()
		return nil
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "riptrace server: shutting down")
	s.Shutdown()
	return nil
}

// serverOptions loads a nats-server configuration file and merges the
// flags into it: --listen and --data when given (else the file's listen
// and store_dir, else the flags' defaults); JetStream is always on.
func serverOptions(file, listen, data string, listenSet, dataSet, logs bool) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--config %s: %v", file, err)}
	}
	if listenSet || opts.Port == 0 {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--listen %q: want HOST:PORT, for example 127.0.0.1:4222", listen)}
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, usageError{fmt.Sprintf("--listen %q: the port is not a number", listen)}
		}
		opts.Host = host
	}
	if dataSet || opts.StoreDir == "" {
		opts.StoreDir = data
	}
	if err := os.MkdirAll(opts.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	opts.NoSigs = true
	opts.NoLog = !logs
	return opts, nil
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
