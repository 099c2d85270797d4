package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/delve"
)

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("agent", "[--host NAME] [--processes GLOB]...", stderr)
	var conn connFlags
	conn.register(fs)
	host := fs.String("host", "", "`NAME` of this host in the fleet (default the hostname)")
	var procs, deny stringList
	fs.Var(&deny, "deny", "never trace source files or functions matching `GLOB` (repeatable; for example '*/internal/crypto/*' or 'main.(*Vault).*')")
	fs.Var(&procs, "processes", "manage only processes whose module path, main package or executable name matches `GLOB` (repeatable)")
	jsonLog := fs.Bool("log-json", false, "log as JSON lines")
	redactNames := fs.String("redact-names", agent.DefaultRedactNames, "redact variables and fields whose names match `REGEXP`, before hits leave the host")
	redactValues := fs.String("redact-values", agent.DefaultRedactValues, "redact values that match `REGEXP`, whatever their names")
	noRedact := fs.Bool("no-redact", false, "send every captured value as is")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("agent takes no arguments, got %q", pos)}
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if *jsonLog {
		h = slog.NewJSONHandler(stderr, nil)
	}
	redact, err := agent.NewRedactor(*redactNames, *redactValues)
	if err != nil {
		return usageError{err.Error()}
	}
	if *noRedact {
		redact = &agent.Redactor{}
	}
	c, err := conn.connect(ctx, "riptrace-agent "+*host)
	if err != nil {
		return err
	}
	defer c.Close()
	a := agent.New(agent.Config{
		Host:        *host,
		Processes:   procs,
		Version:     version,
		BackendName: "delve",
		Deny:        deny,
		Redact:      redact,
		Log:         slog.New(h),
	}, c, delve.New(stderr))
	return a.Run(ctx)
}
