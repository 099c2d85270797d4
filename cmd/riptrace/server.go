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
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/riptrace/riptrace/fleet"
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server", "[--listen HOST:PORT] [--data DIR] [--config FILE] [--ui ADDR] [--name NAME --cluster HOST:PORT --routes URL,...] [--leaf-listen HOST:PORT | --leaf-remote URL]", stderr)
	var ui uiFlags
	ui.register(fs)
	listen := fs.String("listen", "127.0.0.1:4222", "`HOST:PORT` to accept NATS clients on")
	data := fs.String("data", defaultDataDir(), "`DIR` for JetStream's file store (hits, tracepoints, status)")
	prefix := fs.String("prefix", fleet.DefaultPrefix, "subject `prefix`")
	logs := fs.Bool("v", false, "log nats-server's own messages")
	config := fs.String("config", "", "nats-server configuration `FILE` (users, permissions, TLS, accounts, cluster, leafnodes); --listen and --data, when given, override its listen and jetstream store_dir")
	name := fs.String("name", "", "this server's `NAME`, unique in a cluster (default riptrace; the host name when --cluster is given)")
	clusterListen := fs.String("cluster", "", "`HOST:PORT` to accept the other cluster members' routes on: join a NATS cluster")
	clusterName := fs.String("cluster-name", "riptrace", "the cluster's `NAME`, the same on every member")
	routes := fs.String("routes", "", "the cluster members' route `URLs`, comma-separated (nats-route://HOST:PORT); listing this server too is fine")
	leafListen := fs.String("leaf-listen", "", "`HOST:PORT` to accept leaf nodes on: servers at sites whose agents are in another network")
	leafRemote := fs.String("leaf-remote", "", "be a leaf node of the hub at these `URLs` (nats-leaf://HOST:PORT, comma-separated): the site's agents connect here, and this server dials out")
	domain := fs.String("domain", "", "the JetStream `DOMAIN` of this hub, for agents behind leaf nodes (they take it as $RIPTRACE_JS_DOMAIN)")
	replicas := fs.Int("replicas", 0, "replicas of the hit stream and buckets when this server creates them (default 3 in a cluster of three or more, else 1)")
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
		for _, f := range []string{"name", "cluster", "cluster-name", "routes", "leaf-listen", "leaf-remote", "domain"} {
			if set[f] {
				return usageError{fmt.Sprintf("--%s and --config together: with a configuration file, give the server's name, cluster and leafnodes in it (deploy/ has examples)", f)}
			}
		}
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
		cfg := fleet.ServerConfig{Listen: *listen, DataDir: *data, Prefix: *prefix, Logs: *logs, Name: *name, LeafListen: *leafListen, Replicas: *replicas, Domain: *domain}
		if *clusterListen != "" {
			if cfg.Name == "" {
				// Members of a cluster need distinct names.
				cfg.Name, _ = os.Hostname()
			}
			cfg.Cluster = fleet.ClusterConfig{Name: *clusterName, Listen: *clusterListen, Routes: splitList(*routes)}
		}
		cfg.LeafRemotes = splitList(*leafRemote)
		s, err = fleet.StartServer(ctx, cfg)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "riptrace server ready: %s (data in %s)\n", s.ClientURL(), *data)
	go func() {
		select {
		case <-s.Ready():
			if *clusterListen != "" {
				fmt.Fprintln(stdout, "riptrace server: the cluster has the hit stream and buckets")
			}
		case <-ctx.Done():
		}
	}()
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

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
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
