package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/agent/setup"
)

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("agent", "[--config FILE] [--host NAME] [--processes GLOB]...", stderr)
	var conn connFlags
	conn.register(fs)
	configFile := fs.String("config", "", "read the agent's configuration from `FILE` (YAML, see docs/agent.example.yaml); flags given too win over it")
	host := fs.String("host", "", "`NAME` of this host in the fleet (default the hostname)")
	var procs, deny stringList
	var uids uidList
	fs.Var(&deny, "deny", "never trace source files or functions matching `GLOB` (repeatable; for example '*/internal/crypto/*' or 'main.(*Vault).*')")
	fs.Var(&procs, "processes", "manage and attach to only processes whose module path, main package or executable name matches `GLOB` (repeatable)")
	fs.Var(&uids, "uid", "manage and attach to only processes running as user `ID` (repeatable; real, effective and saved uids must all be listed)")
	jsonLog := fs.Bool("log-json", false, "log as JSON lines")
	redactNames := fs.String("redact-names", agent.DefaultRedactNames, "redact variables and fields whose names match `REGEXP`, before hits leave the host")
	redactValues := fs.String("redact-values", agent.DefaultRedactValues, "redact values that match `REGEXP`, whatever their names")
	noRedact := fs.Bool("no-redact", false, "send every captured value as is")
	backend := fs.String("backend", agent.BackendAuto, "serve tracepoints with `BACKEND`: auto (eBPF where the kernel and permissions allow it and the tracepoint can be expressed, else Delve), ebpf or delve; a tracepoint's own backend field overrides it")
	stopBudget := fs.Float64("stop-budget", delve.RecommendedStopBudget, "the `FRACTION` of each second a traced process may spend stopped by Delve tracepoints; past it hits are dropped, and a line too hot even so is untraced (0: no budget; eBPF tracepoints never stop a thread)")
	bufferHits := fs.Int("buffer-hits", agent.DefaultBufferHits, "keep up to `N` hits while NATS cannot take them, and deliver them in order once it can; past it, hits are dropped and counted")
	bufferBytes := fs.Int("buffer-bytes", agent.DefaultBufferBytes, "bound the same buffer to `BYTES` of encoded hits")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on `ADDR` (for example 127.0.0.1:9464); the agent listens nowhere else")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("agent takes no arguments, got %q", pos)}
	}
	sources := map[string]string{}
	var warnings []string
	if *configFile != "" {
		fc, err := agent.LoadConfigFile(*configFile)
		if err != nil {
			return usageError{err.Error()}
		}
		warnings = fc.Warnings()
		set := flagsSet(fs, map[string]string{"nats": "RIPTRACE_NATS", "creds": "RIPTRACE_CREDS", "inbox-prefix": "RIPTRACE_INBOX_PREFIX", "password": "RIPTRACE_PASSWORD", "token": "RIPTRACE_TOKEN"})
		str := func(flag string, dst *string, key, v string) {
			if !set[flag] && fc.Set(key) {
				*dst = v
			}
		}
		str("host", host, "host", fc.Host)
		str("nats", &conn.url, "nats.url", fc.NATS.URL)
		str("prefix", &conn.prefix, "nats.prefix", fc.NATS.Prefix)
		str("creds", &conn.cred.Creds, "nats.creds", fc.NATS.Creds)
		str("inbox-prefix", &conn.cred.InboxPrefix, "nats.inboxPrefix", fc.NATS.InboxPrefix)
		str("nkey", &conn.cred.NKey, "nats.nkey", fc.NATS.NKey)
		str("user", &conn.cred.User, "nats.user", fc.NATS.User)
		str("password", &conn.cred.Password, "nats.password", fc.NATS.Password)
		str("token", &conn.cred.Token, "nats.token", fc.NATS.Token)
		str("tls-ca", &conn.cred.TLS.CA, "nats.tls.ca", fc.NATS.TLS.CA)
		str("tls-cert", &conn.cred.TLS.Cert, "nats.tls.cert", fc.NATS.TLS.Cert)
		str("tls-key", &conn.cred.TLS.Key, "nats.tls.key", fc.NATS.TLS.Key)
		str("metrics", metricsAddr, "metrics", fc.Metrics)
		if fc.Redact.Names != nil {
			str("redact-names", redactNames, "redact.names", *fc.Redact.Names)
		}
		if fc.Redact.Values != nil {
			str("redact-values", redactValues, "redact.values", *fc.Redact.Values)
		}
		if !set["no-redact"] {
			*noRedact = fc.Redact.Off
		}
		if !set["log-json"] {
			*jsonLog = fc.Log.JSON
		}
		if !set["processes"] && fc.Set("attach.processes") {
			procs, sources["processes"] = fc.Attach.Processes, fc.Where("attach.processes")
		}
		if !set["uid"] && fc.Set("attach.uids") {
			uids, sources["uids"] = fc.Attach.UIDs, fc.Where("attach.uids")
		}
		if !set["deny"] && fc.Set("deny") {
			deny, sources["deny"] = fc.Deny, fc.Where("deny")
		}
		if !set["buffer-hits"] && fc.Set("buffer.hits") {
			*bufferHits = fc.Buffer.Hits
		}
		if !set["buffer-bytes"] && fc.Set("buffer.bytes") {
			*bufferBytes = fc.Buffer.Bytes
		}
		str("backend", backend, "backend", fc.Backend)
		if !set["stop-budget"] && fc.Set("stopBudget") {
			*stopBudget = fc.StopBudget
		}
	}
	if *stopBudget < 0 || *stopBudget >= 1 || math.IsNaN(*stopBudget) {
		return usageError{fmt.Sprintf("--stop-budget %v: give the fraction of each second a process may spend stopped, such as 0.1 (0: no budget)", *stopBudget)}
	}
	if *bufferHits < 1 || *bufferBytes < 1 {
		return usageError{fmt.Sprintf("--buffer-hits (%d) and --buffer-bytes (%d) must be at least 1", *bufferHits, *bufferBytes)}
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if *jsonLog {
		h = slog.NewJSONHandler(stderr, nil)
	}
	redact, err := agent.NewRedactor(*redactNames, *redactValues)
	if err != nil {
		return usageError{err.Error() + " (write a Go regular expression, or --no-redact)"}
	}
	if *noRedact {
		redact = &agent.Redactor{}
	}
	log := slog.New(h)
	tuneAgentGC()
	backends, err := newBackends(*backend, stderr)
	if err != nil {
		return err
	}
	if backends.EBPF == nil && *backend == agent.BackendAuto {
		log.Info("eBPF unavailable: tracing with Delve", "reason", backends.EBPFErr)
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	var metrics prometheus.Registerer // nil: not served
	if *metricsAddr != "" {
		reg := prometheus.NewRegistry()
		// The agent's own health beside its hits: its heap, collections
		// and goroutines (go_*), and its CPU and memory (process_*).
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "riptrace_ebpf_trap_seconds",
			Help: "What a bare uprobe trap costs a thread of this host, timed once as the eBPF backend first attaches (0 until then). The backend bounds a hit's cost at twice it, and at least it and 10 µs, for its estimates of the hits run while a tracepoint's probes were out.",
		}, func() float64 {
			c, _ := ebpf.MeasuredTrap()
			return c.Seconds()
		}))
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
	// A test of the timeline runs agents whose clocks disagree.
	var skew time.Duration
	if v := os.Getenv("RIPTRACE_TEST_CLOCK_SKEW"); v != "" {
		if skew, err = time.ParseDuration(v); err != nil {
			return usageError{fmt.Sprintf("RIPTRACE_TEST_CLOCK_SKEW=%q: want a duration such as -40ms", v)}
		}
	}
	// A profile of the agent at work, for finding what a hit costs it
	// (make bench's CPU per hit); written when the agent stops.
	if path := os.Getenv("RIPTRACE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w (fix RIPTRACE_CPUPROFILE)", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// And of what it allocates: on a machine where a page touched for the
	// first time is dear, what the agent allocates per hit is CPU.
	if path := os.Getenv("RIPTRACE_MEMPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("creating the memory profile: %w (fix RIPTRACE_MEMPROFILE)", err)
		}
		defer func() {
			runtime.GC() // the profile is as of the last collection
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}
	a := agent.New(agent.Config{
		ClockSkew:   skew,
		Host:        *host,
		Processes:   procs,
		UIDs:        uids,
		RuleSources: sources,
		Version:     version,
		BackendName: strings.Join(backends.Names(), ","),
		Deny:        deny,
		Redact:      redact,
		StopBudget:  *stopBudget,
		BufferHits:  *bufferHits,
		BufferBytes: *bufferBytes,
		Metrics:     metrics,
		Log:         log,
	}, c, backends)
	return a.Run(ctx)
}

// newBackends sets up the backends --backend asks for (see setup.Backends).
func newBackends(name string, stderr io.Writer) (*agent.Backends, error) {
	b, err := setup.Backends(name, stderr)
	var unknown *setup.UnknownBackendError
	if errors.As(err, &unknown) {
		return nil, usageError{"--" + err.Error()}
	}
	if err != nil && name == agent.BackendEBPF {
		return nil, fmt.Errorf("--backend ebpf: %w", err)
	}
	return b, err
}

// uidList is a repeatable --uid flag.
type uidList []int

func (u *uidList) String() string { return fmt.Sprint([]int(*u)) }
func (u *uidList) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return fmt.Errorf("%q is not a user id: give a number such as 1000 (see `id -u USER`)", v)
	}
	*u = append(*u, int(n))
	return nil
}

// flagsSet returns the flags given on the command line, and those whose
// environment variable (env, by flag name) is set: both win over a
// configuration file.
func flagsSet(fs *flag.FlagSet, env map[string]string) map[string]bool {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range env {
		if os.Getenv(v) != "" {
			set[name] = true
		}
	}
	return set
}

// The agent's heap: a soft limit keeps it in check when the hit buffer
// fills in a NATS outage (64 MiB by default). GOMEMLIMIT, when set, wins.
//
// Collections keep Go's default pace (GOGC=100, which GOGC changes). The
// agent collected at five times its live heap (GOGC=400) when a hit cost
// it 87-146 us, a third of it in collections. A hit now allocates about
// 1.1 kB and costs 10-15 us, and at that pace each cycle's heap grew into
// pages never touched (18 to 87 MB on make bench's hot loop, no
// collection in 60k hits): a page touched first costs 12-15 us on a VM
// with page-table isolation. 6,800-7,400 faults per 30k hits (3 runs of
// 4) fell to 900-1,600 at the default pace, whose collections cost less
// than the faults (agent CPU per hit, median of 4 runs each: 11.7 us
// against 14.7).
const agentMemoryLimit = 256 << 20

func tuneAgentGC() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(agentMemoryLimit)
	}
}
