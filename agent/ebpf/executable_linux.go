package ebpf

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/linutil"
	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/internal/snapshot"
	"github.com/riptrace/riptrace/agent/internal/uprobes"
)

// executable is what the targets of one executable file share: Delve's
// binary info, with the types it loads lazily as hits are decoded, the
// DWARF the capture plans are made from, and the ring buffer their probes
// write to, with the reader that decodes it. Each process had its own: 16
// MB of agent RSS per traced process of one program, 8 of them the ring
// buffer's mappings, and a decoding thread each (make bench-resources).
//
// A probe's cookie is unique in its executable (the high half counts the
// probes attached in any of its processes), so the reader finds the probe,
// and so the target, of each record. One target slow to take its hits
// holds the others' back, as one hit channel then fills.
//
// Its goroutine: read decodes the ring buffer until the last target is
// gone.
type executable struct {
	key exeKey
	// mu guards the state of every target of the executable, bi's lazily
	// filled caches and di's: neither is safe for concurrent use.
	mu sync.Mutex
	bi *proc.BinaryInfo
	di *debugInfo
	// byCookie finds the probe of a record.
	byCookie map[uint64]*probe
	// regs and regions are those of the record being decoded, their
	// memory used again for each record.
	regs    linutil.AMD64PtraceRegs
	regions []region
	// cookieGen numbers the probes attached, for their cookies' high half.
	cookieGen uint32
	targets   map[*target]bool
	// unlinked holds the links of probes released, for unlock to close.
	unlinked []link.Link
	rbClosed bool

	events *ebpf.Map
	rb     *ringbuf.Reader
	done   chan struct{} // closed when read has ended

	mono    uprobes.MonoClock // used by the reader alone
	holding atomic.Int64      // see target.Holding
	emptyAt atomic.Int64      // when the reader last left the ring buffer empty (wall, ns)
	// loaded is closed once bi and di are set, or left nil by a failed
	// load, by the first target.
	loaded chan struct{}
	refs   int // targets holding it, the prepared ones aside; guarded by executables' lock
	// prep holds the targets prepared ahead of a tracepoint, by pid (see
	// Preload); guarded by executables' lock.
	prep map[int]*target
	// parked says that no target holds it but it is kept, loaded, until
	// parkTimer forgets it (see release); guarded by executables' lock.
	parked    bool
	parkTimer *time.Timer
}

// An executable no process of which is traced any more keeps its debug
// info for parkFor, and at most maxParked do, oldest forgotten first: a
// replica started, a process restarted or a line traced again goes live
// without reading it again, which takes seconds for a large program (a
// 43 MB gRPC service: 3.5-7 s of the agent's attach, against 13-94 ms
// for the tracepoint itself). Each holds Delve's binary info, some 100 MB
// for that service.
const (
	parkFor   = 10 * time.Minute
	maxParked = 2
)

// exeKey names an executable file; a rebuilt file is another.
type exeKey struct {
	dev, ino   uint64
	size       int64
	mtim, ctim unix.Timespec
}

// keyOf names the executable file exe.
func keyOf(exe string) (exeKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return exeKey{}, fmt.Errorf("reading %s: %w", exe, err)
	}
	return exeKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtim: st.Mtim, ctim: st.Ctim}, nil
}

var executables = struct {
	sync.Mutex
	m      map[exeKey]*executable
	parked []*executable // oldest first
	// preparing has the pids Preload opens a target of, each with a
	// channel closed once it is done.
	preparing map[int]chan struct{}
}{m: make(map[exeKey]*executable), preparing: make(map[int]chan struct{})}

// openShared opens pid's snapshot and Delve target over the executable's
// shared debug info, loading it if pid is the first process of its
// executable. A process whose executable cannot be shared (it was loaded at
// another address, or the first load failed) gets one of its own.
func openShared(pid int, exe string) (*executable, *snapshot.Process, *proc.Target, error) {
	key, err := keyOf(exe)
	if err != nil {
		return nil, nil, nil, err
	}
	executables.Lock()
	x, first := executables.m[key], false
	if x == nil {
		x, first = &executable{key: key, loaded: make(chan struct{}), prep: make(map[int]*target)}, true
		executables.m[key] = x
	}
	x.refs++
	x.unparkLocked()
	executables.Unlock()

	if !first {
		<-x.loaded
		if x.bi != nil {
			// Making a Target writes into the shared binary info, which
			// the reader's decoding and other processes' opening use
			// too: under the executable's lock, like them.
			x.mu.Lock()
			snap, tgt, err := snapshot.OpenShared(pid, x.bi)
			x.mu.Unlock()
			if err != nil {
				x.release()
				return nil, nil, nil, err
			}
			if snap.BinInfo() == x.bi {
				return x, snap, tgt, nil
			}
			snap.Close()
		}
		x.release()
		x = &executable{key: key, refs: 1, loaded: make(chan struct{}), prep: make(map[int]*target)} // not in the map: its own
	}
	snap, tgt, err := snapshot.Open(pid)
	if err == nil {
		x.di, err = loadDebugInfo(exe, snap.BinInfo().Images[0].StaticBase)
		if err != nil {
			snap.Close()
		}
	}
	if err != nil {
		if first {
			close(x.loaded)
		}
		x.release()
		return nil, nil, nil, err
	}
	if err := x.start(); err != nil {
		snap.Close()
		if first {
			close(x.loaded)
		}
		x.release()
		return nil, nil, nil, err
	}
	x.bi = snap.BinInfo()
	if first {
		close(x.loaded)
	}
	return x, snap, tgt, nil
}

// start makes the ring buffer and starts its reader.
func (x *executable) start() error {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(probeObject))
	if err != nil {
		return fmt.Errorf("reading the BPF object: %w", err)
	}
	x.events, err = ebpf.NewMap(spec.Maps["events"])
	if err != nil {
		return fmt.Errorf("making the ring buffer: %w", err)
	}
	x.rb, err = ringbuf.NewReader(x.events)
	if err != nil {
		x.events.Close()
		x.events = nil
		return fmt.Errorf("opening the ring buffer: %w", err)
	}
	x.byCookie = make(map[uint64]*probe)
	x.targets = make(map[*target]bool)
	x.done = make(chan struct{})
	x.emptyAt.Store(time.Now().UnixNano())
	go x.read()
	return nil
}

// release drops a target's hold; the last one forgets the executable and
// ends its reader, or parks it.
func (x *executable) release() {
	executables.Lock()
	defer executables.Unlock()
	x.releaseLocked()
}

// releaseTarget drops t's hold on x, unless t is prepared: a prepared
// target holds none (see prepare).
func (x *executable) releaseTarget(t *target) {
	executables.Lock()
	defer executables.Unlock()
	if x.prep[t.pid] == t {
		delete(x.prep, t.pid)
	}
	if !t.prepared {
		x.releaseLocked()
	}
}

// releaseLocked is release with executables' lock held.
func (x *executable) releaseLocked() {
	x.refs--
	if x.refs > 0 {
		return
	}
	if executables.m[x.key] == x && x.bi != nil {
		x.parked = true
		x.parkTimer = time.AfterFunc(parkFor, func() {
			executables.Lock()
			defer executables.Unlock()
			if x.parked {
				x.unparkLocked()
				x.forgetLocked()
			}
		})
		executables.parked = append(executables.parked, x)
		if len(executables.parked) > maxParked {
			old := executables.parked[0]
			old.unparkLocked()
			old.forgetLocked()
		}
		return
	}
	x.forgetLocked()
}

// unparkLocked takes x off the parked list, if it is on it. executables'
// lock should be held.
func (x *executable) unparkLocked() {
	if !x.parked {
		return
	}
	x.parked = false
	x.parkTimer.Stop()
	executables.parked = slices.DeleteFunc(executables.parked, func(p *executable) bool { return p == x })
}

// forgetLocked forgets x, ends its preparations and its reader.
// executables' lock should be held.
func (x *executable) forgetLocked() {
	if executables.m[x.key] == x {
		delete(executables.m, x.key)
	}
	for _, t := range x.prep {
		go t.close(nil)
	}
	clear(x.prep)
	if x.rb != nil {
		x.mu.Lock()
		x.rbClosed = true
		x.rb.Close()
		x.mu.Unlock()
		go func() {
			<-x.done
			x.events.Close()
		}()
	}
}

// Preload opens a target of pid in the background, reading its
// executable's debug info first if no process of it was traced, and keeps
// it prepared: the first tracepoint set on the process takes it (Attach)
// rather than opening one then. Opening a process of an executable read
// already still costs Delve's scan of the DWARF for the goroutine list and
// the verifier's load of the BPF program: 75 ms of the 43 MB gRPC service's
// time to live in make bench, which then went to 30 ms.
//
// A prepared target holds no process still (its program is loaded, no
// probe is attached) and no executable's debug info in memory: an
// executable whose processes are all prepared and none traced is parked
// (see release), and its preparations end when it is forgotten. At most
// maxPrepared processes of an executable are prepared, each with its BPF
// maps (1.6 MB of kernel memory). It reads at the agent's own priority: an
// attach to the process waits for a load under way, and at nice 19 on a
// busy host (8 busy loops, load 15) the load took minutes, so that no
// tracepoint was installed within 60 s. It does nothing for a new
// executable when maxParked executables are parked already: the memory
// stays bounded.
func (b *Backend) Preload(pid int) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	key, err := keyOf(exe)
	if err != nil {
		return
	}
	executables.Lock()
	x, known := executables.m[key]
	full := len(executables.parked) >= maxParked
	_, busy := executables.preparing[pid]
	busy = busy || known && (x.prep[pid] != nil || len(x.prep) >= maxPrepared)
	if busy || !known && full {
		executables.Unlock()
		return
	}
	done := make(chan struct{})
	executables.preparing[pid] = done
	executables.Unlock()
	go func() {
		defer func() {
			executables.Lock()
			delete(executables.preparing, pid)
			executables.Unlock()
			close(done)
		}()
		start, ok := agent.StartTime(pid)
		if !ok {
			return
		}
		go trapCost() // as Attach does
		t, err := newTarget(pid, exe)
		if err != nil {
			return
		}
		t.prepare(start)
	}()
}

// maxPrepared bounds the processes of an executable prepared (Preload).
const maxPrepared = 8

// prepare keeps t, opened for the process that started at start, among its
// executable's prepared targets, taking back its hold on the executable;
// or closes it where it cannot be kept.
func (t *target) prepare(start uint64) {
	executables.Lock()
	defer executables.Unlock()
	x := t.x
	if executables.m[x.key] != x || x.prep[t.pid] != nil || len(x.prep) >= maxPrepared {
		go t.close(nil) // an executable of its own, or no room
		return
	}
	t.prepared, t.start = true, start
	x.prep[t.pid] = t
	x.releaseLocked()
}

// takePrepared returns the prepared target of process pid of the
// executable key, holding the executable for it, or nil if there is none
// (or the pid names another process now). A target Preload is opening is
// waited for, rather than opened a second time beside it, unless ctx ends
// first.
func takePrepared(ctx context.Context, pid int, key exeKey) *target {
	executables.Lock()
	if done, ok := executables.preparing[pid]; ok {
		executables.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil
		}
		executables.Lock()
	}
	defer executables.Unlock()
	x := executables.m[key]
	if x == nil || x.prep[pid] == nil {
		return nil
	}
	t := x.prep[pid]
	delete(x.prep, pid)
	if start, ok := agent.StartTime(pid); !ok || start != t.start {
		go t.close(nil)
		return nil
	}
	t.prepared = false
	x.refs++
	x.unparkLocked()
	return t
}

// unlock releases mu, then closes the links of the probes released
// meanwhile: the kernel can take a grace period to remove a probe, and the
// other processes of the executable must not wait for it. A record of a
// released probe that arrives meanwhile is skipped by its cookie.
func (x *executable) unlock() {
	ls := x.unlinked
	x.unlinked = nil
	x.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}
