package agent

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/riptrace/riptrace/fleet"
)

// procKey identifies a process image across pid reuse and exec.
type procKey struct {
	pid   int
	start uint64 // start time in clock ticks since boot, /proc/PID/stat field 22
	exe   string // exec keeps the pid and start time but changes this
}

// discoverer lists the Go processes on this host. It caches what it learned
// from each executable's build info, and each process's start time, so a
// scan costs a readdir, and a stat and a readlink per process.
type discoverer struct {
	self    int
	selfExe os.FileInfo // the agent's executable: its workers, and riptrace server, dap and lsp run it too

	mu     sync.Mutex                 // guards cache and starts
	cache  map[procKey]*fleet.Process // nil value: not a Go program
	starts map[int]knownStart         // by pid, as of the last scan
}

// knownStart is a process's start time, read once, with the identity of
// its /proc/PID directory when it was read. The kernel makes that inode
// anew for a new process of the pid (it drops a process's /proc entries as
// it exits), with a new number and change time: while both are the same,
// the pid is still the same process. Reading the start time was about
// half of a scan's CPU: /proc/PID/stat is formatted in full, some fifty
// fields, for one of them.
type knownStart struct {
	ino   uint64
	ctime syscall.Timespec
	start uint64
}

func newDiscoverer() *discoverer {
	d := &discoverer{self: os.Getpid(), cache: make(map[procKey]*fleet.Process), starts: make(map[int]knownStart)}
	d.selfExe, _ = os.Stat("/proc/self/exe")
	return d
}

// scan returns the Go processes that are alive now, keyed by pid. Only
// those that stamped says may be traced have their link stamps read (see
// exeFacts.stampsOf); nil says all may.
func (d *discoverer) scan(stamped func(*fleet.Process) bool) map[int]*fleet.Process {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[procKey]bool)
	out := make(map[int]*fleet.Process)
	starts := make(map[int]knownStart, len(d.starts))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == d.self {
			continue
		}
		start, ok := d.startTime(pid)
		if !ok {
			continue
		}
		starts[pid] = start
		// A zombie has no executable link: it is dropped here.
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue // a kernel thread, or gone
		}
		k := procKey{pid, start.start, exe}
		seen[k] = true
		p, cached := d.cache[k]
		if !cached {
			p, _ = inspect(pid, stamped)
			if p != nil && d.plumbing(p) != "" {
				p = nil
			}
			d.cache[k] = p
		}
		if p != nil {
			out[pid] = p
		}
	}
	for k := range d.cache {
		if !seen[k] {
			delete(d.cache, k)
		}
	}
	d.starts = starts
	return out
}

// startTime returns pid's start time, read from /proc/PID/stat only if the
// last scan did not see this process of the pid (see knownStart). The
// directory is looked at first: a process that took the pid between the
// two reads is then taken for a new one again at the next scan, never for
// the one before it.
func (d *discoverer) startTime(pid int) (knownStart, bool) {
	var path [32]byte
	var st syscall.Stat_t
	if syscall.Stat(string(strconv.AppendInt(append(path[:0], "/proc/"...), int64(pid), 10)), &st) != nil {
		return knownStart{}, false
	}
	if k, ok := d.starts[pid]; ok && k.ino == st.Ino && k.ctime == st.Ctim {
		return k, true
	}
	start, ok := StartTime(pid)
	return knownStart{ino: st.Ino, ctime: st.Ctim, start: start}, ok
}

// lookup inspects one pid without the cache, with an error that says why it
// cannot be traced.
func (d *discoverer) lookup(pid int) (*fleet.Process, error) {
	if pid == d.self {
		return nil, fleet.Errorf(fleet.CodeNotManaged, "pid %d is the agent itself: RipTrace never attaches to its own agent", pid)
	}
	p, err := inspect(pid, nil)
	if err != nil {
		return nil, err
	}
	if what := d.plumbing(p); what != "" {
		return nil, fleet.Errorf(fleet.CodeNotManaged, "pid %d is %s: RipTrace never attaches to its own plumbing (stopping it would stop the hits too)", pid, what)
	}
	return p, nil
}

// Main packages RipTrace never traces: itself and the NATS server its hits
// travel through.
const (
	riptracePackage   = "github.com/riptrace/riptrace/cmd/riptrace"
	natsServerPackage = "github.com/nats-io/nats-server/v2"
)

// plumbing says what p is if RipTrace must never attach to it (a RipTrace
// process, such as the agent's own Delve workers or riptrace server, or a
// NATS server), or returns "".
func (d *discoverer) plumbing(p *fleet.Process) string {
	switch {
	case p.MainPackage == riptracePackage:
		return "a RipTrace process"
	case p.MainPackage == natsServerPackage:
		return "the NATS server"
	}
	if d.selfExe != nil {
		if fi, err := os.Stat(fmt.Sprintf("/proc/%d/exe", p.Pid)); err == nil && os.SameFile(fi, d.selfExe) {
			return "a copy of the agent (one of its Delve workers, or another RipTrace command)"
		}
	}
	return ""
}

// StartTime reads a process's start time from /proc/PID/stat: with the
// pid, it names one process (a pid is used again once its process ends).
// A scan reads it of every process each second: it reads into a buffer on
// the stack, with no more system calls than it takes.
func StartTime(pid int) (uint64, bool) {
	var path [32]byte
	fd, err := syscall.Open(string(strconv.AppendInt(append(path[:0], "/proc/"...), int64(pid), 10))+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	var buf [1024]byte
	n, err := syscall.Read(fd, buf[:])
	syscall.Close(fd)
	if err != nil || n <= 0 {
		return 0, false
	}
	b := buf[:n]
	// The command name (field 2) may hold spaces and parentheses: fields
	// restart after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	// Field 3 is the state, field 22 the start time.
	rest := b[i+1:]
	var state byte
	for f := 1; ; f++ {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		field := rest[:end]
		switch {
		case len(field) == 0:
			return 0, false
		case f == 1:
			state = field[0]
		case f == 20:
			if state == 'Z' {
				return 0, false
			}
			v, err := strconv.ParseUint(string(field), 10, 64)
			return v, err == nil
		}
		rest = rest[end:]
	}
}

// inspect reads a process's Go build info through /proc/PID/exe, which works
// for processes in other mount namespaces (containers) and for executables
// deleted since they started. The link stamps are read only if stamped
// says so of the process without them (nil: always).
func inspect(pid int, stamped func(*fleet.Process) bool) (*fleet.Process, error) {
	exeLink := fmt.Sprintf("/proc/%d/exe", pid)
	exe, err := os.Readlink(exeLink)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fleet.Errorf(fleet.CodeNoProcess, "no process with pid %d on this host: list the Go processes with `riptrace hosts`", pid)
		}
		return nil, fleet.Errorf(fleet.CodeNoProcess, "reading the executable of pid %d: %v (is it a kernel thread, or is the agent missing CAP_SYS_PTRACE?)", pid, err)
	}
	x, err := exeFactsOf(pid)
	if err != nil {
		return nil, err
	}
	if x.notGo != nil {
		return nil, fleet.Errorf(fleet.CodeNotGo, "pid %d (%s) is not a Go program (%v): RipTrace traces Go binaries only", pid, exe, x.notGo)
	}
	p := &fleet.Process{
		Pid:         pid,
		Exe:         strings.TrimSuffix(exe, " (deleted)"),
		Cmdline:     cmdline(pid),
		Module:      x.module,
		MainPackage: x.mainPackage,
		GoVersion:   x.goVersion,
		Revision:    x.revision,
		Modified:    x.modified,
		VCSTime:     x.vcsTime,
		Build:       x.build,
		ContainerID: containerID(pid),
	}
	if stamped == nil || stamped(p) {
		p.Stamps = x.stampsOf(pid)
	}
	return p, nil
}

// exeFacts is what a process's executable says of itself.
type exeFacts struct {
	module, mainPackage, goVersion string
	revision, vcsTime              string
	modified                       bool
	build                          string
	notGo                          error

	// The link stamps, read when first asked for (stampsOf) if the build
	// info has no revision. key is the executable's, to read them from.
	key        exeKey
	needStamps bool
	stampsMu   sync.Mutex
	stampsRead bool
	stamps     map[string]string // shared by the processes of the executable: read only
}

// stampsOf returns the link stamps of the executable, read from pid's
// the first time: reading its symbols takes milliseconds of CPU for a
// large one, and each scan meets every new executable the host runs, of
// which only those the agent may trace need them (on this project's
// shared test machine they were a fifth of an idle agent's CPU). It
// returns nil if pid no longer runs the executable; a later call tries
// again.
func (x *exeFacts) stampsOf(pid int) map[string]string {
	if !x.needStamps {
		return nil
	}
	x.stampsMu.Lock()
	defer x.stampsMu.Unlock()
	if !x.stampsRead {
		f, k, err := openExe(pid)
		if err != nil {
			return nil
		}
		defer f.Close()
		if k != x.key {
			return nil
		}
		if ef, err := elf.NewFile(f); err == nil {
			x.stamps = linkStamps(ef)
		}
		x.stampsRead = true
	}
	return x.stamps
}

// exes caches exeFacts per executable. Reading an executable's symbols for
// its link stamps takes milliseconds of CPU for a large one, and hosts that
// build or run jobs start the same executables again and again (on this
// project's shared test machine, most of a busy agent's CPU went to it).
var exes struct {
	sync.Mutex
	m map[exeKey]*exeFacts
}

// maxExes bounds exes: past it the cache starts over.
const maxExes = 256

// exeReads counts the executables read, for tests.
var exeReads atomic.Int64

// exeFactsOf reads what pid's executable says of itself, once per
// executable (by its exeKey); notGo says when it is not a Go program.
func exeFactsOf(pid int) (*exeFacts, error) {
	// Read through the file opened for the key (see openExe): a process
	// that exits meanwhile would otherwise leave "not a Go program" cached
	// for its executable, and every later process of it untraced.
	f, k, err := openExe(pid)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exes.Lock()
	x := exes.m[k]
	exes.Unlock()
	if x == nil {
		x = readExeFacts(f)
		x.key = k
		exes.Lock()
		if exes.m == nil || len(exes.m) >= maxExes {
			exes.m = make(map[exeKey]*exeFacts)
		}
		exes.m[k] = x
		exes.Unlock()
	}
	return x, nil
}

func readExeFacts(exe *os.File) *exeFacts {
	exeReads.Add(1)
	info, err := buildinfo.Read(exe)
	if err != nil {
		return &exeFacts{notGo: err}
	}
	x := &exeFacts{module: info.Main.Path, mainPackage: info.Path, goVersion: info.GoVersion}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			x.revision = s.Value
		case "vcs.modified":
			x.modified = s.Value == "true"
		case "vcs.time":
			x.vcsTime = s.Value
		}
	}
	if x.revision == "" {
		// Found by the client instead (source.Resolve), from what the
		// executable says of itself.
		if f, err := elf.NewFile(exe); err == nil {
			x.build, x.needStamps = goBuildID(f), true
		}
	}
	if x.module == "" {
		// Built from a file list (go build x.go) or a testdata directory:
		// there is no module; the main package path is the best name.
		x.module = x.mainPackage
	}
	return x
}

func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

var containerIDRe = regexp.MustCompile(`[0-9a-f]{64}`)

// containerID finds a 64-hex container id in the process's cgroup path
// (docker, containerd, cri-o and podman all put it there).
func containerID(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	return containerIDRe.FindString(string(b))
}

// kernelRelease returns the running kernel's release.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procUIDs returns the real, effective and saved uids of pid, from the Uid
// line of /proc/PID/status.
func procUIDs(pid int) ([3]int, error) {
	var ids [3]int
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ids, err
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 3 {
			break
		}
		for i := range ids {
			if ids[i], err = strconv.Atoi(f[i]); err != nil {
				return ids, fmt.Errorf("reading /proc/%d/status: Uid line %q", pid, strings.TrimSpace(line))
			}
		}
		return ids, nil
	}
	return ids, fmt.Errorf("/proc/%d/status has no Uid line", pid)
}
