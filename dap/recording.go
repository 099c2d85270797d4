package dap

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-dap"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario/recording"
	"github.com/riptrace/riptrace/source"
)

// A recorded run replays in a session: an attach configuration with
// "recording": FILE (from riptrace run --record DIR) connects to no fleet.
// Each tracepoint of the recording becomes a breakpoint at its local line,
// and the recorded hits go through what shows live hits, in the order they
// ran: the console, the hits view, the timeline and snapshots. Nothing is
// traced: a breakpoint set in the editor is verified only where the
// recording has hits.

// attachRecording attaches the session to the recording cfg names.
func (ss *session) attachRecording(req *dap.AttachRequest, cfg *AttachConfig) {
	rec, err := recording.Open(cfg.Recording)
	if err != nil {
		ss.sendError(req.Seq, req.Command, ErrBadConfig, (&configError{"recording", fmt.Sprintf("cannot be replayed: %v", err)}).Error())
		return
	}
	ws, err := source.NewWorkspace(cfg.Cwd)
	if err != nil {
		ss.sendError(req.Seq, req.Command, ErrBadConfig, (&configError{"cwd", fmt.Sprintf("must be a directory of the local checkout: %v", err)}).Error())
		return
	}
	ss.cfg, ss.ws, ss.rec = cfg, ws, rec
	ss.repo, _ = source.OpenRepo(ws.Root)
	sel := fleet.Selector{Hosts: cfg.Hosts, Processes: cfg.Processes}
	var placed []fleet.Placed
	for _, p := range rec.Timeline(cfg.timeline()) {
		proc := fleet.Process{Pid: p.Pid, Exe: p.Process.Exe, Module: p.Process.Module, MainPackage: p.Process.MainPackage}
		if sel.MatchHost(p.Host) && sel.MatchProcess(&proc) {
			placed = append(placed, p)
		}
	}
	bps := ss.recordedBreakpoints(placed)
	ss.send(&dap.AttachResponse{Response: ss.response(&req.Request)})
	ss.send(&dap.InitializedEvent{Event: ss.event("initialized")})
	ss.output("console", fmt.Sprintf("riptrace: replaying %s: %d of its %d hits, of scenario %s recorded at %s, in the order they ran. Nothing is traced: each recorded tracepoint is a breakpoint, and a click on its code lens or a hit opens it as a snapshot.\n",
		cfg.Recording, len(placed), rec.Hits, rec.Scenario, rec.Recorded.Local().Format(time.RFC3339)))
	for _, e := range rec.Errors {
		ss.output("console", "riptrace: the recorded run failed: "+e+"\n")
	}
	for _, b := range bps {
		ss.send(&dap.BreakpointEvent{Event: ss.event("breakpoint"), Body: dap.BreakpointEventBody{Reason: "new", Breakpoint: b.current()}})
	}
	ss.background.Go(ss.tick)
	for _, p := range placed {
		ss.showRecorded(p)
	}
}

// recordedBreakpoints makes a breakpoint of each tracepoint of hits, at
// the local line of its first hit, in the order of their first hits.
func (ss *session) recordedBreakpoints(hits []fleet.Placed) []*breakpoint {
	counts := make(map[string]int)
	var bps []*breakpoint
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for i := range hits {
		h := &hits[i].Hit
		counts[h.Tracepoint]++
		if ss.byTracepoint[h.Tracepoint] != nil {
			continue
		}
		ss.nextBP++
		b := &breakpoint{id: ss.nextBP, tracepoint: h.Tracepoint, file: h.File}
		b.file, b.line = ss.localLine(b.file, h)
		ss.byTracepoint[h.Tracepoint] = b
		bps = append(bps, b)
	}
	for _, b := range bps {
		b.state = dap.Breakpoint{Id: b.id, Verified: true, Source: &dap.Source{Name: filepath.Base(b.file), Path: b.file}, Line: b.line,
			Message: fmt.Sprintf("recorded tracepoint %s: %s in %s", b.tracepoint, plural(counts[b.tracepoint], "hit"), filepath.Base(ss.cfg.Recording))}
	}
	return bps
}

// showRecorded shows one recorded hit as the hit pump shows a live one.
func (ss *session) showRecorded(p fleet.Placed) {
	ss.mu.Lock()
	b := ss.byTracepoint[p.Tracepoint]
	e := &logged{p: p, bp: b.id, fallback: b.file}
	ss.recent = keepLast(ss.recent, &e.p.Hit, recentHits)
	ss.mu.Unlock()
	ss.showHit(b, e)
}

// recordedBreakpointsAt answers the editor's breakpoints during a replay:
// one on a recorded tracepoint's line is that tracepoint's breakpoint;
// any other is not set, and says why.
func (ss *session) recordedBreakpointsAt(file string, lines []int) []dap.Breakpoint {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]dap.Breakpoint, len(lines))
	for i, l := range lines {
		for _, b := range ss.byTracepoint {
			if b.file == file && b.line == l {
				out[i] = b.current()
			}
		}
		if out[i].Id == 0 {
			ss.nextBP++
			out[i] = dap.Breakpoint{Id: ss.nextBP, Verified: false, Line: l, Source: &dap.Source{Name: filepath.Base(file), Path: file},
				Message: fmt.Sprintf("not set: %s has no hit on this line. A replay shows what was recorded and traces nothing: attach without \"recording\" to trace it", filepath.Base(ss.cfg.Recording))}
		}
	}
	return out
}

// recordedFunctionBreakpoints answers n function breakpoints during a
// replay: a recording's tracepoints are its only breakpoints.
func (ss *session) recordedFunctionBreakpoints(n int) []dap.Breakpoint {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]dap.Breakpoint, n)
	for i := range out {
		ss.nextBP++
		out[i] = dap.Breakpoint{Id: ss.nextBP, Verified: false,
			Message: fmt.Sprintf("not set: a replay of %s shows its recorded tracepoints and traces nothing: attach without \"recording\" to trace a function", filepath.Base(ss.cfg.Recording))}
	}
	return out
}

// recordedThreads lists the processes of the recorded hits, sorted by id:
// a snapshot's thread must be among them for the editor to show it.
func (ss *session) recordedThreads() []dap.Thread {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	seen := make(map[int]bool)
	var threads []dap.Thread
	for _, m := range ss.rec.Messages {
		if h := m.Hit; h != nil && !seen[ss.threadIDLocked(h.Host, h.Pid)] {
			id := ss.threadIDLocked(h.Host, h.Pid)
			seen[id] = true
			threads = append(threads, dap.Thread{Id: id, Name: fmt.Sprintf("%s @ %s (pid %d, recorded)", filepath.Base(h.Process.Exe), h.Host, h.Pid)})
		}
	}
	if ss.snap != nil {
		for i := range threads {
			if threads[i].Id == ss.snap.thread {
				threads[i].Name += ": snapshot of " + snapshotTitle(&ss.snap.hit)
			}
		}
	}
	sort.Slice(threads, func(i, j int) bool { return threads[i].Id < threads[j].Id })
	return threads
}
