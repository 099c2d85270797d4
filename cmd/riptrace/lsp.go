package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/riptrace/riptrace/lsp"
)

// runLSP serves the language server on stdin/stdout. Its log goes to stderr
// or --log FILE: stdout is the wire.
func runLSP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("lsp", "[flags]", stderr)
	var conn connFlags
	conn.register(fs)
	logFile := fs.String("log", "", "append the log to `FILE` instead of stderr")
	verbose := fs.Bool("v", false, "log debug messages too")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	logTo := stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		logTo = f
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := lsp.DefaultConfig()
	if err := conn.check(); err != nil {
		return err
	}
	cfg.NATS, cfg.Prefix = conn.url, conn.prefix
	cfg.SetCredentials(conn.cred)
	served := make(chan error, 1)
	go func() { served <- serveLSP(ctx, stdout, logTo, level, cfg) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		// Interrupted: Serve removes the editor's tracepoints, then may
		// wait forever for a read of stdin to return. Give it a moment.
		select {
		case <-served:
		case <-time.After(2 * time.Second):
		}
		return nil
	}
}

func serveLSP(ctx context.Context, stdout, logTo io.Writer, level slog.Level, cfg lsp.Config) error {
	return lsp.Serve(ctx, lsp.NewStream(stdio{os.Stdin, stdout}), lsp.Options{
		Log:     slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: level})),
		Config:  cfg,
		Version: version,
		// The reader is blocked on stdin: closing the connection would
		// wait for it. exit ends the process at once, as the LSP asks.
		Exit: os.Exit,
	})
}

// stdio is the language server's stream: requests on stdin, responses on
// stdout.
type stdio struct {
	io.Reader
	io.Writer
}

func (stdio) Close() error { return os.Stdin.Close() }
