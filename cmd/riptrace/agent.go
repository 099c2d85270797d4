package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	stopBudget := fs.Float64("stop-budget", 0, "the `FRACTION` of each second a traced process may spend stopped by tracepoints, for example 0.1; past it hits are dropped, and a line too hot even so is untraced (0: no budget)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on `ADDR` (for example 127.0.0.1:9464); the agent listens nowhere else")
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
	log := slog.New(h)
	var metrics prometheus.Registerer // nil: not served
	if *metricsAddr != "" {
		reg := prometheus.NewRegistry()
		metrics = reg
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("serving metrics: %w (pick another --metrics address)", err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving metrics", "addr", ln.Addr().String())
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
		StopBudget:  *stopBudget,
		Metrics:     metrics,
		Log:         log,
	}, c, delve.New(stderr))
	return a.Run(ctx)
}
