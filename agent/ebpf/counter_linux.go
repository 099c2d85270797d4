package ebpf

import (
	"fmt"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/internal/uprobes"
	"github.com/riptrace/riptrace/fleet"
)

// Counter is the bare uprobe `make bench` measures the backend against: at
// the same PCs, the smallest program there is (probe.c's count), which
// counts hits and copies nothing.
type Counter struct {
	t     *target
	links []link.Link
}

// NewCounter attaches a counting uprobe to path:line in pid.
func NewCounter(pid int, path string, line int) (*Counter, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, err
	}
	t, err := newTarget(pid, fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, err
	}
	c := &Counter{t: t}
	// The debug info is shared with the executable's other targets.
	t.mu.Lock()
	file, err := agent.ResolveFile(t.snap.BinInfo().Sources, fleet.Location{Path: path, Line: line})
	var pcs []uint64
	if err == nil {
		pcs, err = proc.FindFileLocation(t.snap, file, line)
	}
	static := t.snap.BinInfo().Images[0].StaticBase
	t.mu.Unlock()
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, pc := range pcs {
		off, err := uprobes.FileOffset(t.exe, pc, static)
		if err == nil {
			var l link.Link
			l, err = t.ex.Uprobe("count", t.coll.Programs["count"], &link.UprobeOptions{Address: off, PID: pid})
			c.links = append(c.links, l)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("attaching a uprobe at pc %#x: %w", pc, err)
		}
	}
	return c, nil
}

// Count returns the hits so far.
func (c *Counter) Count() (uint64, error) {
	var n uint64
	err := c.t.coll.Maps["counts"].Lookup(uint32(0), &n)
	return n, err
}

// Close removes the probes.
func (c *Counter) Close() {
	for _, l := range c.links {
		if l != nil {
			l.Close()
		}
	}
	c.t.close(nil)
	<-c.t.done
}
