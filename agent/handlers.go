package agent

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
)

func (a *Agent) handleProfile(m *nats.Msg) fleet.Message {
	var req fleet.Request
	// An empty request is accepted, so `nats req P.host.profile.get ''` works.
	if len(m.Data) > 0 {
		if err := fleet.Decode(m.Data, "profile request", &req); err != nil {
			return &fleet.Profile{Error: fleet.AsError(err)}
		}
	}
	if f := req.Fingerprint; f != nil && (len(f.Module) > fleet.MaxPathLen || len(f.Path) > fleet.MaxPathLen) {
		return &fleet.Profile{Error: fleet.Errorf(fleet.CodeTooLarge, "the file to fingerprint is named in more than %d bytes. Name it by module and path in module", fleet.MaxPathLen)}
	}
	p := a.profile()
	if req.Files {
		for i := range p.Processes {
			// Cached per executable; read without touching the process.
			p.Processes[i].Files, _ = a.sources.files(p.Processes[i].Pid)
		}
	}
	if req.Fingerprint != nil {
		// One fingerprint per build: replicas share it, and a profile
		// stays bounded whatever their number.
		seen := make(map[string]bool)
		for i := range p.Processes {
			proc := &p.Processes[i]
			if proc.Revision != "" || proc.Build == "" || seen[proc.Build] {
				continue
			}
			if proc.Fingerprint = a.sources.fingerprint(proc.Pid, *req.Fingerprint); proc.Fingerprint != nil {
				seen[proc.Build] = true
			}
		}
	}
	return p
}

func (a *Agent) profile() *fleet.Profile {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := &fleet.Profile{Host: a.info, Processes: []fleet.Process{}}
	a.tk.info(&p.Host)
	tps := make(map[int][]string)
	for k, pl := range a.placed {
		if pl.view().active() {
			tps[k.pid] = append(tps[k.pid], k.id)
		}
	}
	for pid, proc := range a.procs {
		c := *proc
		c.Attached = a.attached[pid] != nil
		c.Tracepoints = tps[pid]
		sort.Strings(c.Tracepoints)
		p.Processes = append(p.Processes, c)
	}
	sort.Slice(p.Processes, func(i, j int) bool { return p.Processes[i].Pid < p.Processes[j].Pid })
	return p
}

func (a *Agent) handleAttach(m *nats.Msg) fleet.Message {
	var req fleet.AttachRequest
	if err := fleet.Decode(m.Data, "attach request", &req); err != nil {
		return &fleet.AttachReply{Error: fleet.AsError(err)}
	}
	if req.Pid <= 0 {
		return &fleet.AttachReply{Pid: req.Pid, Error: fleet.Errorf(fleet.CodeBadRequest, "attach request needs a pid > 0")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a.recMu.Lock()
	att, err := a.attach(ctx, req.Pid)
	if err == nil {
		a.mu.Lock()
		att.pinnedUntil = time.Now().Add(time.Minute)
		a.mu.Unlock()
	}
	a.recMu.Unlock()
	if err != nil {
		return &fleet.AttachReply{Pid: req.Pid, Error: fleet.AsError(err)}
	}
	return &fleet.AttachReply{Pid: req.Pid, Attached: true}
}

func (a *Agent) handleCreate(m *nats.Msg) fleet.Message {
	var spec fleet.Spec
	if err := fleet.Decode(m.Data, "tracepoint spec", &spec); err != nil {
		return &fleet.CreateTracepointReply{Error: fleet.AsError(err)}
	}
	if err := spec.ValidateAt(time.Now()); err != nil {
		return &fleet.CreateTracepointReply{ID: spec.ID, Error: fleet.AsError(err)}
	}
	if err := a.cfg.Redact.Check(&spec); err != nil {
		return &fleet.CreateTracepointReply{ID: spec.ID, Error: fleet.AsError(err)}
	}
	a.scan() // a process started a moment ago counts
	a.mu.Lock()
	a.direct[spec.ID] = &spec
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a.reconcile(ctx)

	r := &fleet.CreateTracepointReply{ID: spec.ID, Placements: []fleet.Placement{}}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, p := range a.placed {
		if k.id != spec.ID {
			continue
		}
		v := p.view()
		pl := v.pl
		pl.Pid = k.pid
		pl.Error = v.err
		r.Placements = append(r.Placements, pl)
	}
	sort.Slice(r.Placements, func(i, j int) bool { return r.Placements[i].Pid < r.Placements[j].Pid })
	if len(r.Placements) == 0 {
		note := a.hostWide[spec.ID]
		code := fleet.CodeNoProcess
		switch {
		case note.message == "":
			note.message = fmt.Sprintf("tracepoint %s does not select host %s (hosts %v)", spec.ID, a.cfg.Host, spec.Selector.Hosts)
		case note.state == fleet.StateError:
			code = fleet.CodeQuarantined
		}
		r.Error = fleet.Errorf(code, "%s", note.message)
	}
	return r
}

func (a *Agent) handleClear(m *nats.Msg) fleet.Message {
	var req fleet.ClearTracepointRequest
	if err := fleet.Decode(m.Data, "clearTracepoint request", &req); err != nil {
		return &fleet.ClearTracepointReply{Error: fleet.AsError(err)}
	}
	a.mu.Lock()
	_, ok := a.direct[req.ID]
	delete(a.direct, req.ID)
	a.mu.Unlock()
	if !ok {
		return &fleet.ClearTracepointReply{ID: req.ID, Error: fleet.Errorf(fleet.CodeBadRequest, "host %s has no tracepoint %s created by createTracepoint (declared tracepoints are removed from the bucket: `riptrace` clients do that when they exit)", a.cfg.Host, req.ID)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a.reconcile(ctx)
	return &fleet.ClearTracepointReply{ID: req.ID}
}
