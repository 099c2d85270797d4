package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// Backend names, as `riptrace agent --backend` and a spec's backend field
// take them.
const (
	BackendAuto  = "auto"  // eBPF where the kernel allows and the spec can be expressed, else Delve
	BackendEBPF  = "ebpf"  // uprobes: no thread ever stops
	BackendDelve = "delve" // ptrace: each hit stops the process briefly
)

// Backends serves each tracepoint with the backend its spec names, or, for
// auto, with eBPF when it is available and can express the spec (it has no
// hit conditions), else with Delve. Placements say which backend serves
// them, and so does the status built from them.
//
// A process is attached to a backend only once a tracepoint needs it: with
// eBPF alone it is never stopped.
type Backends struct {
	// Default applies to specs that name no backend: auto, ebpf or delve.
	Default string
	// EBPF is nil where eBPF is not available; EBPFErr says why.
	EBPF    Backend
	EBPFErr error
	Delve   Backend
}

// Names lists the backends this host can run, the preferred first, for the
// host profile.
func (b *Backends) Names() []string {
	if b.EBPF == nil || b.Default == BackendDelve {
		return []string{BackendDelve}
	}
	return []string{BackendEBPF, BackendDelve}
}

// SetStopBudget passes the stop budget on to the backends that stop
// processes (Delve); eBPF never stops a thread.
func (b *Backends) SetStopBudget(fraction float64) {
	for _, be := range []Backend{b.Delve, b.EBPF} {
		if s, ok := be.(interface{ SetStopBudget(float64) }); ok {
			s.SetStopBudget(fraction)
		}
	}
}

// Preloader is a Backend that can prepare, in the background, to attach to
// a process discovered: read its debug info ahead of the first tracepoint.
type Preloader interface {
	Preload(pid int)
}

// Preload has the eBPF backend, where it may serve the process, read its
// debug info ahead: eBPF stops nothing, so its time to live is that read.
func (b *Backends) Preload(pid int) {
	if b.Default == BackendDelve {
		return
	}
	if p, ok := b.EBPF.(Preloader); ok {
		p.Preload(pid)
	}
}

// Attach returns the process's target; the backends attach as tracepoints
// need them.
func (b *Backends) Attach(ctx context.Context, pid int) (Target, error) {
	m := &multiTarget{b: b, pid: pid, subs: make(map[string]Target), owner: make(map[string]string), lines: make(map[string]string), specs: make(map[string]Tracepoint), hits: make(chan Hit, 1024), ended: make(chan struct{})}
	return m, nil
}

// pick names the backend for spec.
func (b *Backends) pick(spec Tracepoint) (string, error) {
	name := spec.Backend
	if name == "" {
		name = b.Default
	}
	switch name {
	case BackendEBPF:
		if b.EBPF == nil {
			return "", fleet.Errorf(fleet.CodeAttach, "tracepoint %s asks for the eBPF backend, which this host cannot run: %v; use backend auto or delve", spec.ID, b.EBPFErr)
		}
		return name, nil
	case BackendDelve:
		return name, nil
	case BackendAuto, "":
		if b.EBPF != nil && spec.HitCondition == "" {
			return BackendEBPF, nil
		}
		return BackendDelve, nil
	}
	return "", fleet.Errorf(fleet.CodeBadRequest, "tracepoint %s: unknown backend %q: use auto, ebpf or delve", spec.ID, name)
}

// multiTarget is one process as seen through several backends. Its
// goroutines: one pump per attached backend, merging hits (a Deliverer's
// go to hits directly, and its pump waits for their end).
type multiTarget struct {
	b    *Backends
	pid  int
	hits chan Hit

	// mu guards the fields below.
	mu      sync.Mutex
	subs    map[string]Target
	owner   map[string]string     // tracepoint id → backend name
	lines   map[string]string     // tracepoint id → its line (lineOf)
	specs   map[string]Tracepoint // tracepoint id → its spec, as installed
	pumps   sync.WaitGroup
	ended   chan struct{} // closed when the first backend's hits end
	endOnce sync.Once
	closed  bool
	transit *Transit // handed to each backend's target (see Follow)
}

func (m *multiTarget) Hits() <-chan Hit { return m.hits }

// Stopped is how long the process was stopped by the backends that stop it.
func (m *multiTarget) Stopped() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d time.Duration
	for _, t := range m.subs {
		if st, ok := t.(interface{ Stopped() time.Duration }); ok {
			d += st.Stopped()
		}
	}
	return d
}

// Holding is the capture time of the oldest hit a backend holds before
// delivering it, 0 if none (see the agent's watermarks).
func (m *multiTarget) Holding() int64 {
	// mu is held while a backend attaches, which takes seconds: the
	// watermarks do not wait for it, and a backend attached meanwhile
	// has delivered nothing yet.
	if !m.mu.TryLock() {
		return 0
	}
	defer m.mu.Unlock()
	var oldest int64
	for _, t := range m.subs {
		if h, ok := t.(interface{ Holding() int64 }); ok {
			if v := h.Holding(); v != 0 && (oldest == 0 || v < oldest) {
				oldest = v
			}
		}
	}
	return oldest
}

// Follow has the backends count the process's hits on tr, those attached
// already and those to come.
func (m *multiTarget) Follow(tr *Transit) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.transit = tr
	for _, t := range m.subs {
		if f, ok := t.(Follower); ok {
			f.Follow(tr)
		}
	}
}

// sub returns the backend's target, attaching it first. Lock should be held.
func (m *multiTarget) sub(ctx context.Context, name string) (Target, error) {
	if t := m.subs[name]; t != nil {
		return t, nil
	}
	if m.closed {
		return nil, fmt.Errorf("pid %d is detached", m.pid)
	}
	b := m.b.Delve
	if name == BackendEBPF {
		b = m.b.EBPF
	}
	t, err := b.Attach(ctx, m.pid)
	if err != nil {
		return nil, err
	}
	m.subs[name] = t
	if f, ok := t.(Follower); ok && m.transit != nil {
		f.Follow(m.transit)
	}
	if d, ok := t.(Deliverer); ok {
		// Its pump then only waits for t's Hits to close: m.hits is
		// closed after that.
		d.DeliverTo(m.hits)
	}
	m.pumps.Add(1)
	go m.pump(t, m.transit)
	return t, nil
}

// pump forwards t's hits (none, for a Deliverer: they come on m.hits
// directly); when they end, the process has exited (or the target was
// detached), and so ends every backend's.
func (m *multiTarget) pump(t Target, tr *Transit) {
	defer m.pumps.Done()
	for h := range t.Hits() {
		select {
		case m.hits <- h:
		case <-m.ended:
			tr.Dropped()
		}
	}
	m.end()
}

func (m *multiTarget) end() {
	m.endOnce.Do(func() {
		close(m.ended)
		go func() {
			m.mu.Lock()
			m.closed = true
			subs := m.subs
			m.mu.Unlock()
			for _, t := range subs {
				t.Detach(context.Background())
			}
			m.pumps.Wait()
			close(m.hits)
		}()
	})
}

func (m *multiTarget) Set(ctx context.Context, spec Tracepoint) (Placement, error) {
	name, err := m.b.pick(spec)
	if err != nil {
		return Placement{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.owner[spec.ID]; ok && old != name {
		if err := m.subs[old].Clear(ctx, spec.ID); err != nil {
			return Placement{}, err
		}
		m.forget(spec.ID)
	}
	if other := m.sharing(spec, name); other != "" {
		// A uprobe and a ptrace breakpoint cannot share an instruction:
		// each would take the other's trap.
		if spec.Backend == "" && m.b.Default == BackendAuto && (other == BackendDelve || spec.HitCondition == "") {
			name = other
		} else {
			return Placement{}, fleet.Errorf(fleet.CodeAttach, "tracepoint %s: pid %d already has a tracepoint at that line served by %s, and one instruction cannot carry both a uprobe and a ptrace breakpoint: trace it with %s too, or remove the other", spec.ID, m.pid, other, other)
		}
	}
	var why string
	if name == BackendEBPF && m.auto(spec) {
		// auto: a value the condition, log message or an expression needs
		// that a uprobe cannot read is Delve's to read, rather than shown
		// as not captured in every hit.
		// An eBPF attach that fails here fails again below, and falls
		// back to Delve there.
		why = m.unreadable(ctx, spec)
		if why != "" {
			if other := m.sharing(spec, BackendDelve); other == "" {
				name = BackendDelve
			} else {
				why = ""
			}
		}
	}
	pl, err := m.set(ctx, name, spec)
	if err != nil && name == BackendEBPF && spec.Backend != BackendEBPF && m.b.Default != BackendEBPF && fallsBack(err) {
		// auto: what eBPF cannot attach or plan, Delve may still trace,
		// unless a uprobe serves the line already.
		name = BackendDelve
		if other := m.sharing(spec, name); other != "" {
			return Placement{}, fmt.Errorf("%w; and Delve cannot take it instead, as %s serves another tracepoint at that line in pid %d", err, other, m.pid)
		}
		old, replaced := m.specs[spec.ID]
		if replaced && m.owner[spec.ID] == BackendEBPF {
			// The failed replacement left the old uprobes in place.
			if cerr := m.subs[BackendEBPF].Clear(ctx, spec.ID); cerr != nil {
				return Placement{}, fmt.Errorf("%w; and clearing the eBPF tracepoint it replaces failed: %v", err, cerr)
			}
			m.forget(spec.ID)
		}
		pl, err = m.set(ctx, name, spec)
		if err != nil && replaced && m.owner[spec.ID] == "" {
			// Neither took the new one: the old one goes back.
			if _, rerr := m.set(ctx, BackendEBPF, old); rerr == nil {
				m.remember(old, BackendEBPF)
			}
		}
	}
	if err != nil {
		return Placement{}, err
	}
	m.remember(spec, name)
	pl.Backend = name
	if name == BackendDelve {
		pl.BackendWhy = why
	}
	return pl, nil
}

// auto reports whether spec leaves the backend to the agent's choice.
func (m *multiTarget) auto(spec Tracepoint) bool {
	return spec.Backend == BackendAuto || spec.Backend == "" && m.b.Default == BackendAuto
}

// unreadable asks the eBPF backend whether a value spec needs is out of
// its reach at the line (see ebpf's Unreadable), attaching it first. Lock
// should be held.
func (m *multiTarget) unreadable(ctx context.Context, spec Tracepoint) string {
	t, err := m.sub(ctx, BackendEBPF)
	if err != nil {
		return ""
	}
	if u, ok := t.(interface{ Unreadable(Tracepoint) string }); ok {
		return u.Unreadable(spec)
	}
	return ""
}

// remember records that backend name serves spec. Lock should be held.
func (m *multiTarget) remember(spec Tracepoint, name string) {
	m.owner[spec.ID] = name
	m.lines[spec.ID] = lineOf(spec)
	m.specs[spec.ID] = spec
}

// forget drops what remember recorded of id. Lock should be held.
func (m *multiTarget) forget(id string) {
	delete(m.owner, id)
	delete(m.lines, id)
	delete(m.specs, id)
}

// sharing names the other backend serving a tracepoint at spec's line, if
// one does. Lock should be held.
func (m *multiTarget) sharing(spec Tracepoint, name string) string {
	l := lineOf(spec)
	for id, other := range m.owner {
		if id != spec.ID && m.lines[id] == l && other != name {
			return other
		}
	}
	return ""
}

func lineOf(spec Tracepoint) string {
	return fmt.Sprintf("%s\x00%s:%d", spec.Location.Module, spec.Location.Path, spec.Location.Line)
}

// set installs spec with the named backend. Lock should be held.
func (m *multiTarget) set(ctx context.Context, name string, spec Tracepoint) (Placement, error) {
	t, err := m.sub(ctx, name)
	if err != nil {
		return Placement{}, err
	}
	return t.Set(ctx, spec)
}

// fallsBack reports whether an eBPF failure is the backend's own, rather
// than one Delve would meet too (no such file, no code on the line).
func fallsBack(err error) bool {
	var fe *fleet.Error
	if errors.As(err, &fe) {
		return fe.Code == fleet.CodeAttach || fe.Code == fleet.CodeInternal
	}
	return !strings.Contains(err.Error(), "process is gone")
}

func (m *multiTarget) Clear(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name, ok := m.owner[id]
	if !ok {
		return nil
	}
	m.forget(id)
	return m.subs[name].Clear(ctx, id)
}

// Detach detaches every backend; ErrProcessExited if the process had exited.
func (m *multiTarget) Detach(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	subs := make(map[string]Target, len(m.subs))
	for k, v := range m.subs {
		subs[k] = v
	}
	m.mu.Unlock()
	var first error
	for _, t := range subs {
		if err := t.Detach(ctx); err != nil && first == nil {
			first = err
		}
	}
	m.end()
	return first
}
