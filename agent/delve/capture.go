package delve

import (
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
	frames, g := dlvvalue.Stack(tgt, th, tp.spec.Capture, &h, tp.lbp.File, tp.lbp.Line)
	if frames == nil {
		return h
	}
	scope := proc.FrameToScope(tgt, th.ProcessMemory(), g, th.ThreadID(), frames...)
	dlvvalue.Converter{Pieces: &t.pieces}.ReadWarm(scope, tp.spec.Capture, tp.load, tp.log, &h, &tp.warm)
	return h
}
