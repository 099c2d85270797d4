package ebpf

import (
	"bytes"
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
	refs   int // targets holding it; guarded by executables' lock
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

var executables = struct {
	sync.Mutex
	m      map[exeKey]*executable
	parked []*executable // oldest first
}{m: make(map[exeKey]*executable)}

// openShared opens pid's snapshot and Delve target over the executable's
// shared debug info, loading it if pid is the first process of its
// executable. A process whose executable cannot be shared (it was loaded at
// another address, or the first load failed) gets one of its own.
func openShared(pid int, exe string) (*executable, *snapshot.Process, *proc.Target, error) {
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return nil, nil, nil, fmt.Errorf("reading %s: %w", exe, err)
	}
	key := exeKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtim: st.Mtim, ctim: st.Ctim}
	executables.Lock()
	x, first := executables.m[key], false
	if x == nil {
		x, first = &executable{key: key, loaded: make(chan struct{})}, true
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
		x = &executable{key: key, refs: 1, loaded: make(chan struct{})} // not in the map: its own
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
// ends its reader.
func (x *executable) release() {
	executables.Lock()
	defer executables.Unlock()
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

// forgetLocked forgets x and ends its reader. executables' lock should be
// held.
func (x *executable) forgetLocked() {
	if executables.m[x.key] == x {
		delete(executables.m, x.key)
	}
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

// Preload reads the debug info of pid's executable in the background and
// keeps it as that of an executable no process traces (see release): a
// tracepoint set on the process later goes live without reading it. It
// reads at the agent's own priority: an attach to the process waits for a
// load under way, and at nice 19 on a busy host (8 busy loops, load 15)
// the load took minutes, so that no tracepoint was installed within 60 s. It does nothing when maxParked executables are
// parked already and this one is not loaded: the memory stays bounded.
func (b *Backend) Preload(pid int) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return
	}
	key := exeKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtim: st.Mtim, ctim: st.Ctim}
	executables.Lock()
	_, known := executables.m[key]
	full := len(executables.parked) >= maxParked
	executables.Unlock()
	if known || full {
		return
	}
	go func() {
		x, snap, _, err := openShared(pid, exe)
		if err != nil {
			return
		}
		snap.Close()
		x.release()
	}()
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
