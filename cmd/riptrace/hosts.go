package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

func runHosts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hosts", "[--json]", stderr)
	var conn connFlags
	conn.register(fs)
	asJSON := fs.Bool("json", false, "print the hosts as one JSON array")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("hosts takes no arguments, got %q", pos)}
	}
	c, err := conn.connect(ctx, "riptrace hosts")
	if err != nil {
		return err
	}
	defer c.Close()
	hosts, err := c.Hosts(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if hosts == nil {
			hosts = []fleet.HostEntry{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(hosts)
	}
	if len(hosts) == 0 {
		fmt.Fprintf(stdout, "no agents on %s: start one with `riptrace agent --nats %s`\n", conn.url, conn.url)
		return nil
	}
	printHosts(stdout, hosts)
	return nil
}

// printHosts writes the hosts as two tables, agents then their processes,
// each with column headers, and a legend for the columns that need one.
//
//	HOST    STATE  SYSTEM                        AGENT                         CLOCK
//	shop-a  live   linux/amd64, kernel 6.1, 8 CPUs  v0.4 with backends ebpf and delve  +0.012ms to the server's
func printHosts(w io.Writer, hosts []fleet.HostEntry) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tSYSTEM\tAGENT\tCLOCK")
	var warnings []string
	for _, h := range hosts {
		if h.Error != "" {
			warnings = append(warnings, fmt.Sprintf("%s: %s", h.Name, h.Error))
		}
		if h.Gone {
			fmt.Fprintf(tw, "%s\tgone: no heartbeat for %s\t-\t-\t-\n", h.Name, time.Since(h.LastSeen).Round(time.Second))
			continue
		}
		hi := h.Profile.Host
		clock := "unknown: " + hi.ClockError
		if hi.Clock != nil {
			clock = hi.Clock.String() + " to the server's"
		}
		fmt.Fprintf(tw, "%s\tlive\t%s/%s, kernel %s, %d CPUs\t%s with %s\t%s\n", h.Name, hi.OS, hi.Arch, hi.Kernel, hi.CPUs, hi.AgentVersion, backendWords(hi.Backends), clock)
	}
	tw.Flush()
	for _, warn := range warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}

	n := 0
	for _, h := range hosts {
		if h.Profile != nil {
			n += len(h.Profile.Processes)
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "\nno Go process on any host: the agents see none that their --processes globs admit")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPID\tPROGRAM\tMAIN PACKAGE\tREVISION\tGO\tATTACHED")
	for _, h := range hosts {
		if h.Profile == nil {
			continue
		}
		for _, p := range h.Profile.Processes {
			rev := fleet.ShortRevision(p.Revision)
			if rev == "" {
				rev = "unknown"
			}
			if p.Modified {
				rev += "+dirty"
			}
			state := "no"
			if p.Attached {
				state = fmt.Sprintf("yes, %d tracepoints", len(p.Tracepoints))
				if len(p.Tracepoints) == 1 {
					state = "yes, 1 tracepoint"
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", h.Name, p.Pid, filepath.Base(p.Exe), p.MainPackage, rev, p.GoVersion, state)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, `
REVISION is the commit the program was built from, as its binary records it:
+dirty when built with uncommitted edits, unknown when built without vcs
information (a line then maps as in the checkout's revision). ATTACHED says
whether the agent is attached to the process now: it attaches when a
tracepoint matches the process and detaches once none does.`)
}

// backendWords names the agent's backends in words: "backends ebpf and
// delve".
func backendWords(bs []string) string {
	switch len(bs) {
	case 0:
		return "no backend"
	case 1:
		return "backend " + bs[0]
	}
	return "backends " + strings.Join(bs[:len(bs)-1], ", ") + " and " + bs[len(bs)-1]
}
