package agent

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"syscall"

	"github.com/riptrace/riptrace/fleet"
)

// exeKey identifies an executable file's content well enough to cache what
// its DWARF says: replicas of one service share one entry, a rebuilt binary
// gets a new one.
type exeKey struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

// sourceIndex knows which source files each executable's DWARF names, read
// from the file without touching the process: the agent attaches only to
// processes that have the file a tracepoint names. Scans warm it in the
// background, so that a tracepoint seldom waits for it.
type sourceIndex struct {
	sem chan struct{} // bounds concurrent DWARF reads

	mu  sync.Mutex // guards m and fps
	m   map[exeKey]*indexEntry
	fps map[fpKey]*fleet.Fingerprint
}

type fpKey struct {
	exe  exeKey
	file string
}

type indexEntry struct {
	done  chan struct{} // closed when files or err is set
	files []string      // sorted
	err   error
}

func newSourceIndex() *sourceIndex {
	return &sourceIndex{sem: make(chan struct{}, 1), m: make(map[exeKey]*indexEntry), fps: make(map[fpKey]*fleet.Fingerprint)}
}

// errNotIndexed is what indexed returns while an executable's files are
// still being read.
var errNotIndexed = errors.New("the executable's source files are still being read")

// indexed returns the source files of pid's executable if they are known
// already, without waiting; errNotIndexed while they are being read (it
// starts reading them).
func (x *sourceIndex) indexed(pid int) ([]string, error) {
	f, k, err := openExe(pid)
	if err != nil {
		return nil, err
	}
	f.Close()
	x.mu.Lock()
	e, ok := x.m[k]
	x.mu.Unlock()
	if ok {
		select {
		case <-e.done:
			return e.files, e.err
		default:
		}
	} else {
		x.warm(pid)
	}
	return nil, errNotIndexed
}

// openExe opens pid's executable and returns it with its key. What is read
// is read through the file, never by the path again: a process that exits
// meanwhile takes its /proc entry with it, and a read by path would fail
// with "no such file" — an error of the process, which the index would
// cache as the executable's and give every later process of it (a stressed
// CI run saw a scenario's services refused for a pid long gone). The open
// file stays readable whatever the process does.
func openExe(pid int) (*os.File, exeKey, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, exeKey{}, fleet.Errorf(fleet.CodeNoProcess, "reading the executable of pid %d: %v", pid, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, exeKey{}, fleet.Errorf(fleet.CodeNoProcess, "reading the executable of pid %d: %v", pid, err)
	}
	return f, exeKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}, nil
}

// files returns the source files of pid's executable.
func (x *sourceIndex) files(pid int) ([]string, error) {
	f, k, err := openExe(pid)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	x.mu.Lock()
	e, ok := x.m[k]
	if !ok {
		e = &indexEntry{done: make(chan struct{})}
		x.m[k] = e
	}
	x.mu.Unlock()
	if !ok {
		x.sem <- struct{}{}
		e.files, e.err = dwarfFiles(f)
		// Reading DWARF decompresses tens of megabytes for a large
		// service, once per executable: give them back now rather than
		// keep the agent's footprint at its peak.
		debug.FreeOSMemory()
		<-x.sem
		close(e.done)
	}
	<-e.done
	return e.files, e.err
}

// fingerprint returns what the DWARF of pid's executable says of loc's
// file (see fleet.Fingerprint), nil if the executable lacks the file. It
// is read once per executable and file.
func (x *sourceIndex) fingerprint(pid int, loc fleet.Location) *fleet.Fingerprint {
	files, err := x.files(pid)
	if err != nil {
		return nil
	}
	file, err := ResolveFile(files, loc)
	if err != nil {
		return nil
	}
	f, exe, err := openExe(pid)
	if err != nil {
		return nil
	}
	defer f.Close()
	k := fpKey{exe, file}
	x.mu.Lock()
	fp, ok := x.fps[k]
	x.mu.Unlock()
	if ok {
		return fp
	}
	x.sem <- struct{}{}
	fp = dwarfFingerprint(f, file)
	debug.FreeOSMemory()
	<-x.sem
	x.mu.Lock()
	x.fps[k] = fp
	x.mu.Unlock()
	return fp
}

// warm indexes pid's executable in the background.
func (x *sourceIndex) warm(pid int) {
	go x.files(pid)
}

// dwarfFiles lists the files the line tables of exe name.
func dwarfFiles(exe *os.File) ([]string, error) {
	f, err := elf.NewFile(exe)
	if err != nil {
		return nil, fleet.Errorf(fleet.CodeNotGo, "reading %s: %v", exe.Name(), err)
	}
	d, err := f.DWARF()
	if err != nil {
		// The file's own link names it even once the process is gone.
		target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", exe.Fd()))
		return nil, fleet.Errorf(fleet.CodeNoFile, "%s has no DWARF debug info (%v): it was built with -ldflags=-w or stripped; RipTrace needs the debug info, so rebuild without -w and -s", target, err)
	}
	seen := make(map[string]bool)
	r := d.Reader()
	for {
		cu, err := r.Next()
		if err != nil {
			return nil, fleet.Errorf(fleet.CodeInternal, "reading the DWARF of %s: %v", exe.Name(), err)
		}
		if cu == nil {
			break
		}
		if lr, _ := d.LineReader(cu); lr != nil {
			for _, fe := range lr.Files() {
				if fe != nil {
					seen[fe.Name] = true
				}
			}
		}
		r.SkipChildren()
	}
	files := make([]string, 0, len(seen))
	for name := range seen {
		files = append(files, name)
	}
	sort.Strings(files)
	return files, nil
}
