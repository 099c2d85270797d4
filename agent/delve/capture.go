package delve

import (
	"fmt"
	"time"

	"github.com/riptrace/riptrace/agent/internal/dlvvalue"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/fleet"
)

// capture reads what tp asks for from a thread stopped at tp's breakpoint.
// Whatever cannot be read is said in the hit, never guessed.
func (t *target) capture(th proc.Thread, tp *tracepoint) fleet.Hit {
	tgt := t.grp.Selected
	h := fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid, Time: time.Now().UnixNano()}
	c := tp.spec.Capture
	depth := c.StackDepth
	if depth <= 0 {
		depth = 1
	}
	frames, err := proc.ThreadStacktrace(tgt, th, depth)
	if err != nil || len(frames) == 0 {
		h.Errors = append(h.Errors, fmt.Sprintf("reading the stack: %v", err))
		h.File, h.Line = tp.lbp.File, tp.lbp.Line
		return h
	}
	dlvvalue.Place(&h, frames, c.StackDepth > 0)
	g, gerr := proc.GetG(th)
	if gerr == nil && g != nil {
		h.Goroutine = g.ID
	}
	scope := proc.FrameToScope(tgt, th.ProcessMemory(), g, th.ThreadID(), frames...)
	dlvvalue.Converter{}.ReadWarm(scope, tp.spec.Capture, tp.load, tp.log, &h, &tp.warm)
	return h
}
