package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
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
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, h := range hosts {
		if h.Gone {
			fmt.Fprintf(tw, "%s\tgone (last seen %s ago)\t%s\n", h.Name, time.Since(h.LastSeen).Round(time.Second), h.Error)
			continue
		}
		hi := h.Profile.Host
		clock := "clock unknown: " + hi.ClockError
		if hi.Clock != nil {
			clock = "clock " + hi.Clock.String() + " to the server's"
		}
		fmt.Fprintf(tw, "%s\t%s/%s, kernel %s, %d CPUs, agent %s (%v)\t%d Go processes\t%s\n", h.Name, hi.OS, hi.Arch, hi.Kernel, hi.CPUs, hi.AgentVersion, hi.Backends, len(h.Profile.Processes), clock)
		if h.Error != "" {
			fmt.Fprintf(tw, "  warning: %s\n", h.Error)
		}
		for _, p := range h.Profile.Processes {
			rev := p.Revision
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if p.Modified {
				rev += "+dirty"
			}
			if rev == "" {
				rev = "-"
			}
			state := "-"
			if p.Attached {
				state = fmt.Sprintf("attached, %d tracepoints", len(p.Tracepoints))
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", p.Pid, filepath.Base(p.Exe), p.MainPackage, rev, p.GoVersion, state)
		}
	}
	return tw.Flush()
}
