// Command riptrace is the one RipTrace binary: the embedded server, the
// agent, and the clients (hosts, trace, the debug adapter, the language
// server and the demo). An agent also re-runs it as a Delve worker, one per
// traced process (see agent/delve).
//
// Usage:
//
//	riptrace server [--listen HOST:PORT] [--data DIR] [--config nats.conf]
//	riptrace agent [--config FILE] [--host NAME] [--processes GLOB]... [--uid UID]... [--backend auto|ebpf|delve] [--metrics ADDR]
//	riptrace hosts [--json]
//	riptrace trace [--hosts GLOB]... [--processes GLOB]... [--cond EXPR] [--hit-cond COND] [--log MSG] [--count N] [--for DURATION] [--json] FILE:LINE
//	riptrace dap [--listen ADDR]
//	riptrace lsp [--log FILE]
//	riptrace run [--junit FILE] [--json] [--repeat N] FILE...
//	riptrace demo
//	riptrace version
//
// Every command that talks to the fleet takes --nats URL (default
// nats://127.0.0.1:4222, or $RIPTRACE_NATS) and the NATS credentials flags
// (--creds, --nkey, --user/--password, --token, --tls-*, --inbox-prefix);
// `riptrace COMMAND -h` lists the rest.
//
// RIPTRACE_CPUPROFILE=FILE has `riptrace agent` write a CPU profile of
// itself to FILE when it stops (go tool pprof reads it): what make bench's
// CPU per hit is spent on; RIPTRACE_MEMPROFILE=FILE, a profile of what it
// allocated.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/riptrace/riptrace/agent/delve"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"server", "run the embedded NATS server with JetStream", runServer},
	{"agent", "serve this host's Go processes to the fleet", runAgent},
	{"hosts", "list agents and their Go processes", runHosts},
	{"trace", "trace FILE:LINE on every matching process and print each hit", runTrace},
	{"timeline", "print the hits of every tracepoint in the order they ran, live or replayed", runTimeline},
	{"dap", "serve the Debug Adapter Protocol (for VS Code and nvim-dap)", runDAP},
	{"lsp", "serve the Language Server Protocol (hit counts and values in the editor)", runLSP},
	{"run", "run scenario files: start services, trace, drive, check what the lines saw", runRun},
	{"demo", "run the whole system against the demo services and print a timeline", runDemo},
	{"version", "print the version", runVersion},
}

func main() {
	// An agent re-runs this binary as a Delve worker, one per traced process.
	delve.MaybeRunWorker()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errFailed) {
			fmt.Fprintln(os.Stderr, "riptrace:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stderr)
		if len(args) == 0 {
			return usageError{"no command given"}
		}
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	printUsage(stderr)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "riptrace: a distributed tracepoint debugger for Go services")
	fmt.Fprintln(w, "\nUsage: riptrace COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nRun riptrace COMMAND -h for a command's flags.")
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "riptrace", version)
	return nil
}
