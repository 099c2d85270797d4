package dap

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
)

// A snapshot shows one hit as if its thread had stopped there: a stopped
// event, then its captured stack, scopes and variables through stackTrace,
// scopes and variables. The process never paused; continue dismisses the
// snapshot. One is open at a time: with "snapshots": true the first hit
// after each continue opens one, and the REPL's `snapshot BP` opens the
// latest hit of a breakpoint.
type snapshot struct {
	thread int
	hit    fleet.Hit
	bpID   int
	// handles maps variablesReference to the variables it lists; handle
	// numbers restart with each snapshot.
	handles map[int][]fleet.Variable
}

// Frame ids are frame indexes plus one, scoped to the open snapshot.

// threadIDLocked returns the thread id of a process. Lock should be held.
func (ss *session) threadIDLocked(host string, pid int) int {
	key := host + "/" + strconv.Itoa(pid)
	id, ok := ss.threadIDs[key]
	if !ok {
		ss.nextThread++
		id = ss.nextThread
		ss.threadIDs[key] = id
	}
	return id
}

// openSnapshot shows h as stopped on its thread, unless one is open and
// force is false. It returns the snapshot's title (hit number, host and
// time), or "" if it opened none.
func (ss *session) openSnapshot(b *breakpoint, h fleet.Hit, force bool) string {
	ss.mu.Lock()
	if ss.snap != nil && !force {
		ss.mu.Unlock()
		return ""
	}
	old := ss.snap
	snap := &snapshot{thread: ss.threadIDLocked(h.Host, h.Pid), hit: h, bpID: b.id, handles: make(map[int][]fleet.Variable)}
	ss.snap = snap
	ss.mu.Unlock()
	if old != nil {
		// The open one is dismissed first: an editor that sees a second
		// stopped event on a stopped thread keeps showing the first.
		ss.send(&dap.ContinuedEvent{Event: ss.event("continued"), Body: dap.ContinuedEventBody{ThreadId: old.thread}})
	}
	title := snapshotTitle(&h)
	ss.send(&dap.StoppedEvent{Event: ss.event("stopped"), Body: dap.StoppedEventBody{
		Reason:            "breakpoint",
		Description:       "Snapshot of " + title + " (the process never paused)",
		Text:              fmt.Sprintf("%s %s[%d] g%d", h.Host, h.Process.Exe, h.Pid, h.Goroutine),
		ThreadId:          snap.thread,
		HitBreakpointIds:  []int{b.id},
		AllThreadsStopped: false,
	}})
	return title
}

// snapshotTitle names a hit in the Call Stack view and in the stopped
// event: "hit #12 on orders-1 at 15:04:05.123", or #12.3 for the fourth
// hit of a batch, as the hits view names it.
func snapshotTitle(h *fleet.Hit) string {
	at := h.ServerTime
	if h.Time != 0 {
		at = time.Unix(0, h.Time)
	}
	return fmt.Sprintf("hit #%s on %s at %s", h.Number(), h.Host, at.Local().Format("15:04:05.000"))
}

// onStep answers the step requests: nothing ever paused, so nothing steps.
func (ss *session) onStep(r *dap.Request) {
	ss.mu.Lock()
	open := ss.snap != nil
	ss.mu.Unlock()
	if open {
		ss.sendError(r.Seq, r.Command, ErrSnapshotStep, "A snapshot cannot step: it is a hit that was recorded while the process ran on. Continue dismisses it.")
		return
	}
	ss.sendError(r.Seq, r.Command, ErrUnsupported, "RipTrace never pauses a process, so there is nothing to step. Set a breakpoint on the next line to see its values.")
}

// handle registers vars under a new variablesReference. Lock should be held.
func (s *snapshot) handle(vars []fleet.Variable) int {
	if len(vars) == 0 {
		return 0
	}
	id := len(s.handles) + 1
	s.handles[id] = vars
	return id
}

// current returns the open snapshot of thread, or an error message.
// Lock should be held.
func (ss *session) snapshotLocked(thread int) (*snapshot, string) {
	if ss.snap == nil {
		return nil, "no snapshot is open: RipTrace never pauses a process. Click a breakpoint's code lens or a hit in the RipTrace hits view, or type `snapshot BREAKPOINT` in the debug console, to look at a hit"
	}
	if thread != 0 && ss.snap.thread != thread {
		return nil, fmt.Sprintf("thread %d has no open snapshot (thread %d has)", thread, ss.snap.thread)
	}
	return ss.snap, ""
}

func (ss *session) onStackTrace(req *dap.StackTraceRequest) {
	ss.mu.Lock()
	snap, why := ss.snapshotLocked(req.Arguments.ThreadId)
	if snap == nil {
		ss.mu.Unlock()
		ss.sendError(req.Seq, req.Command, ErrNoSnapshot, why)
		return
	}
	stack := snap.hit.Stack
	ss.mu.Unlock()
	frames := []dap.StackFrame{}
	start := max(req.Arguments.StartFrame, 0)
	for i := start; i < len(stack); i++ {
		if req.Arguments.Levels > 0 && len(frames) >= req.Arguments.Levels {
			break
		}
		fr := stack[i]
		sf := dap.StackFrame{Id: i + 1, Name: fr.Function, Line: fr.Line, Column: 1}
		if local := ss.localFile(fr.File); local != "" {
			sf.Source = &dap.Source{Name: filepath.Base(local), Path: local}
		} else {
			// Not in the checkout (the standard library, a dependency):
			// named, but not opened.
			sf.Source = &dap.Source{Name: filepath.Base(fr.File), Path: fr.File, PresentationHint: "deemphasize"}
		}
		frames = append(frames, sf)
	}
	ss.send(&dap.StackTraceResponse{Response: ss.response(&req.Request), Body: dap.StackTraceResponseBody{StackFrames: frames, TotalFrames: len(stack)}})
}

func (ss *session) onScopes(req *dap.ScopesRequest) {
	ss.mu.Lock()
	snap, why := ss.snapshotLocked(0)
	if snap == nil {
		ss.mu.Unlock()
		ss.sendError(req.Seq, req.Command, ErrNoSnapshot, why)
		return
	}
	// The first scope is the snapshot's title, with nothing under it: the
	// Variables view then says which hit it shows, as lenses and hits move on.
	scopes := []dap.Scope{{Name: "Snapshot of " + snapshotTitle(&snap.hit)}}
	// Only the hit's own frame was captured with values.
	if req.Arguments.FrameId == 1 {
		for _, sc := range []struct {
			name, hint string
			vars       []fleet.Variable
		}{{"Arguments", "arguments", snap.hit.Args}, {"Locals", "locals", snap.hit.Locals}, {"Expressions", "", snap.hit.Exprs}} {
			if len(sc.vars) == 0 && sc.name == "Expressions" {
				continue
			}
			scopes = append(scopes, dap.Scope{Name: sc.name, PresentationHint: sc.hint, VariablesReference: snap.handle(sc.vars), NamedVariables: len(sc.vars)})
		}
	}
	ss.mu.Unlock()
	ss.send(&dap.ScopesResponse{Response: ss.response(&req.Request), Body: dap.ScopesResponseBody{Scopes: scopes}})
}

func (ss *session) onVariables(req *dap.VariablesRequest) {
	ss.mu.Lock()
	snap, why := ss.snapshotLocked(0)
	if snap == nil {
		ss.mu.Unlock()
		ss.sendError(req.Seq, req.Command, ErrNoSnapshot, why)
		return
	}
	vars, ok := snap.handles[req.Arguments.VariablesReference]
	if !ok {
		ss.mu.Unlock()
		ss.sendError(req.Seq, req.Command, ErrNoSnapshot, fmt.Sprintf("variablesReference %d belongs to no open snapshot: it was dismissed", req.Arguments.VariablesReference))
		return
	}
	out := make([]dap.Variable, 0, len(vars))
	for _, v := range vars {
		out = append(out, dap.Variable{Name: v.Name, Value: variableValue(&v), Type: v.Type, VariablesReference: snap.handle(v.Children), NamedVariables: len(v.Children)})
	}
	ss.mu.Unlock()
	ss.send(&dap.VariablesResponse{Response: ss.response(&req.Request), Body: dap.VariablesResponseBody{Variables: out}})
}

// onContinue dismisses the open snapshot. Nothing runs again: nothing was
// ever paused.
func (ss *session) onContinue(req *dap.ContinueRequest) {
	ss.mu.Lock()
	ss.snap = nil
	ss.mu.Unlock()
	ss.send(&dap.ContinueResponse{Response: ss.response(&req.Request), Body: dap.ContinueResponseBody{AllThreadsContinued: true}})
}

// snapshotCommand is the REPL's `snapshot BP`: open the latest hit of
// breakpoint BP.
func (ss *session) snapshotCommand(arg string) (string, error) {
	id, err := strconv.Atoi(arg)
	if err != nil {
		return "", fmt.Errorf("usage: snapshot BREAKPOINT, with the breakpoint's number as `hits` shows it (got %q)", arg)
	}
	res, err := ss.openHit(id, 0, 0, "", 0)
	if err != nil {
		return "", fmt.Errorf("snapshot: %w", err)
	}
	return fmt.Sprintf("opened %s of breakpoint %d as a snapshot; Continue dismisses it", res["title"], id), nil
}

// variableValue is a value as the Variables view shows it: the mark every
// view shows (fleet.Variable.Shown), then why, since this view has room.
func variableValue(v *fleet.Variable) string {
	val := v.Shown()
	if v.Unreadable != "" {
		val += " (" + v.Unreadable + ")"
	}
	return val
}
