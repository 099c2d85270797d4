package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/riptrace/riptrace/dap"
)

// runDAP serves the Debug Adapter Protocol: on stdin/stdout by default (VS
// Code and nvim-dap "executable" adapters), or on a TCP address with
// --listen (nvim-dap "server" adapters, VS Code's debugServer). In stdio mode
// stdout is the wire: everything else goes to stderr.
func runDAP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dap", "[--listen ADDR] [--log-level LEVEL]", stderr)
	listen := fs.String("listen", "", "serve DAP on `ADDR` (for example 127.0.0.1:4711), one session per connection, instead of stdin/stdout")
	level := fs.String("log-level", "warn", "log on stderr from `LEVEL` up (debug, info, warn, error)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return usageError{"dap takes no arguments: the editor sends the configuration in its attach request"}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usageError{fmt.Sprintf("--log-level: %v", err)}
	}
	srv := dap.NewServer(dap.Options{Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))})
	if *listen == "" {
		return srv.Serve(ctx, os.Stdin, stdout)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening for DAP clients: %w", err)
	}
	fmt.Fprintf(stderr, "riptrace dap: listening on %s\n", ln.Addr())
	return srv.ServeListener(ctx, ln)
}
