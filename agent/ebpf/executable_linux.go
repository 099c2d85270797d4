package ebpf

import (
	"fmt"
	"sync"

	"github.com/go-delve/delve/pkg/proc"
	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent/internal/snapshot"
)

// executable is what the targets of one executable file share: Delve's
// binary info, with the types it loads lazily as hits are decoded, and the
// DWARF the capture plans are made from. Each process had its own: 16 MB
// of agent RSS per traced process of one program (make bench-resources).
type executable struct {
	key exeKey
	// mu guards the state of every target of the executable, bi's lazily
	// filled caches and di's: neither is safe for concurrent use.
	mu sync.Mutex
	bi *proc.BinaryInfo
	di *debugInfo
	// loaded is closed once bi and di are set, or left nil by a failed
	// load, by the first target.
	loaded chan struct{}
	refs   int // targets holding it; guarded by executables' lock
}

// exeKey names an executable file; a rebuilt file is another.
type exeKey struct {
	dev, ino   uint64
	size       int64
	mtim, ctim unix.Timespec
}

var executables = struct {
	sync.Mutex
	m map[exeKey]*executable
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
	executables.Unlock()

	if !first {
		<-x.loaded
		if x.bi != nil {
			snap, tgt, err := snapshot.OpenShared(pid, x.bi)
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
		x = &executable{key: key, refs: 1} // not in the map: its own
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
	x.bi = snap.BinInfo()
	if first {
		close(x.loaded)
	}
	return x, snap, tgt, nil
}

// release drops a target's hold; the last one forgets the executable.
func (x *executable) release() {
	executables.Lock()
	defer executables.Unlock()
	x.refs--
	if x.refs == 0 && executables.m[x.key] == x {
		delete(executables.m, x.key)
	}
}
