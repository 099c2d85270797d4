package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario"
)

func runTimeline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("timeline", "[--since DURATION] [--follow] [--recording FILE] [flags]", stderr)
	var conn connFlags
	conn.register(fs)
	var hosts, procs, tps, groups stringList
	fs.Var(&hosts, "hosts", "only hits of hosts matching `GLOB` (repeatable)")
	fs.Var(&procs, "processes", "only hits of processes whose module path, main package or executable name matches `GLOB` (repeatable)")
	fs.Var(&tps, "tracepoint", "only hits of tracepoint `ID` (repeatable)")
	fs.Var(&groups, "group", "group hits by the captured value `NAME` (an --expr of the tracepoint, an argument or a local; repeatable, the first a hit has counts) and print each request as a block")
	since := fs.Duration("since", 0, "replay the hits of the last `DURATION` (default: only hits from now on)")
	follow := fs.Bool("follow", false, "with --since, go on with live hits after the replay")
	showStack := fs.Bool("show-stack", false, "print the captured stack under each hit")
	asJSON := fs.Bool("json", false, "print one JSON object per hit per line")
	recording := fs.String("recording", "", "print the hits `FILE` holds, saved by riptrace run --record, instead of the fleet's")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("timeline takes no arguments, got %q", pos)}
	}
	for _, g := range append(append([]string{}, hosts...), procs...) {
		if _, err := path.Match(g, ""); err != nil {
			return usageError{fmt.Sprintf("glob %q: %v", g, err)}
		}
	}
	topts := fleet.TimelineOptions{}
	if len(groups) > 0 {
		topts.Group = fleet.GroupBy(groups...)
	}
	sel := fleet.Selector{Hosts: hosts, Processes: procs}
	out := &timelineOut{w: stdout, json: *asJSON, stack: *showStack, grouped: len(groups) > 0}
	if *recording != "" {
		if *since > 0 || *follow {
			return usageError{"--recording prints a recorded run: drop --since and --follow"}
		}
		return printRecording(*recording, topts, sel, tps, out)
	}
	c, err := conn.connect(ctx, "riptrace timeline")
	if err != nil {
		return err
	}
	defer c.Close()
	opts := fleet.HitOptions{Tracepoints: tps}
	if *since > 0 {
		opts.Since = time.Now().Add(-*since)
		if !*follow {
			if opts.Until, err = c.HitStreamEnd(ctx); err != nil {
				return err
			} else if opts.Until == 0 {
				fmt.Fprintln(stderr, "riptrace: the hit stream is empty")
				return nil
			}
		}
	}
	tl, err := c.Timeline(ctx, opts, topts)
	if err != nil {
		return err
	}
	defer tl.Close()
	tl.Notice = func(s string) { fmt.Fprintf(stderr, "riptrace: timeline: %s\n", s) }
	// A replay with groups prints each request as one block, even when
	// requests ran interleaved; live hits can only be printed as they come.
	buffer := out.grouped && opts.Until > 0
	var all []fleet.Placed
	for {
		p, err := tl.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				break
			}
			var fe *fleet.Error
			if errors.As(err, &fe) {
				fmt.Fprintf(stderr, "riptrace: skipping a bad message: %v\n", err)
				continue
			}
			return err
		}
		if !selected(sel, &p.Hit) {
			continue
		}
		if buffer {
			all = append(all, p)
			continue
		}
		if err := out.print(&p); err != nil {
			return err
		}
	}
	if buffer {
		for _, p := range blocks(all) {
			if err := out.print(&p); err != nil {
				return err
			}
		}
	}
	return nil
}

// printRecording prints the hits of a recording that riptrace run
// --record saved, in the order they ran, each request as one block when
// grouping; their tracepoints are named as in the scenario.
func printRecording(file string, topts fleet.TimelineOptions, sel fleet.Selector, tps []string, out *timelineOut) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("opening the recording: %w", err)
	}
	defer f.Close()
	rec, err := scenario.ReadRecording(f, file)
	if err != nil {
		return err
	}
	var all []fleet.Placed
	for _, p := range rec.Timeline(topts) {
		if selected(sel, &p.Hit) && (len(tps) == 0 || slices.Contains(tps, p.Tracepoint)) {
			all = append(all, p)
		}
	}
	if out.grouped {
		all = blocks(all)
	}
	for _, p := range all {
		if err := out.print(&p); err != nil {
			return err
		}
	}
	return nil
}

// selected applies --hosts and --processes to a hit.
func selected(sel fleet.Selector, h *fleet.Hit) bool {
	p := fleet.Process{Pid: h.Pid, Exe: h.Process.Exe, Module: h.Process.Module, MainPackage: h.Process.MainPackage}
	return sel.MatchHost(h.Host) && sel.MatchProcess(&p)
}

// blocks orders hits request by request: each group's hits together, in
// timeline order, the groups in the order of their first hit; hits of no
// group stay where they are, as groups of one.
func blocks(ps []fleet.Placed) []fleet.Placed {
	first := make(map[string]int)
	key := make([]int, len(ps))
	for i, p := range ps {
		k := i
		if p.Group != "" {
			if f, ok := first[p.Group]; ok {
				k = f
			} else {
				first[p.Group] = i
			}
		}
		key[i] = k
	}
	idx := make([]int, len(ps))
	for i := range idx {
		idx[i] = i
	}
	// Stable: within a group, timeline order.
	sort.SliceStable(idx, func(a, b int) bool { return key[idx[a]] < key[idx[b]] })
	out := make([]fleet.Placed, len(ps))
	for i, j := range idx {
		out[i] = ps[j]
	}
	return out
}

// timelineOut prints hits of the timeline, with a header where a request
// begins when grouping.
type timelineOut struct {
	w                    io.Writer
	json, stack, grouped bool
	group                string
	n                    int
}

func (o *timelineOut) print(p *fleet.Placed) error {
	if o.json {
		fillEmpty(&p.Hit)
		return json.NewEncoder(o.w).Encode(p)
	}
	// Hits that carry a trace context are grouped by it with no --group.
	if (o.grouped || p.Group != "" || o.group != "") && (o.n == 0 || p.Group != o.group) {
		if o.n > 0 {
			fmt.Fprintln(o.w)
		}
		if p.Group != "" {
			fmt.Fprintf(o.w, "── request %s ──\n", p.Group)
		} else {
			fmt.Fprintln(o.w, "── no request ──")
		}
		o.group = p.Group
	}
	o.n++
	printPlaced(o.w, p, o.stack)
	return nil
}
