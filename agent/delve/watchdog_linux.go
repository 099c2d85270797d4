package delve

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// In int3 mode (see the package doc), a worker that is SIGKILLed (or
// OOM-killed, or killed with its agent's cgroup) cannot remove its breakpoints: the kernel detaches the target
// with int3 bytes still in its text, and the target dies of SIGTRAP at its
// next hit. So every worker gets a watchdog, started by the backend before
// the worker: the same executable re-run with RIPTRACE_DELVE_WATCHDOG, in a
// session of its own, reading a journal from a pipe whose other end only the
// worker holds. The worker writes the address and original bytes of
// every breakpoint to the journal before Delve writes the breakpoint, and
// "detached" once it has detached cleanly. If the pipe ends without
// "detached", the worker died: the watchdog writes the original bytes back
// through /proc/PID/mem (root may write text pages through it) wherever an
// int3 is still there, and sends SIGCONT in case the process was left in a
// group stop by a SIGSTOP Delve had sent to one of its threads.
//
// A thread that sits at a breakpoint when the worker dies is let go with its
// SIGTRAP delivered, before any watchdog can act: the worker guards against
// that while the process is stopped (see trapguard_linux.go), and the
// watchdog clears what the guard left. Still open: a kill during Delve's own
// handling of a trap (before the guard) or while it single-steps a thread
// over a breakpoint on resume (after it: the thread keeps its trap flag and
// takes a SIGTRAP, sigcode 2, one instruction later). Both are inside
// Delve's Continue, a fraction of a millisecond per hit.

// watchdogEnv names the environment variable that turns the agent's
// executable into the watchdog of the pid it holds.
const watchdogEnv = "RIPTRACE_DELVE_WATCHDOG"

// journalEnv tells a worker that fd 3 is the journal to its watchdog.
const journalEnv = "RIPTRACE_DELVE_JOURNAL"

// startWatchdog starts the watchdog of pid from exe and returns the write
// end of its journal, for the worker (the caller closes its copy once the
// worker has it), and a channel closed when the watchdog has exited. Logs go
// to stderr.
func startWatchdog(exe string, pid int, stderr io.Writer) (*os.File, <-chan struct{}, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("starting a watchdog for pid %d: %w", pid, err)
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Args = []string{"riptrace-delve-watchdog", "target=" + strconv.Itoa(pid)} // for ps
	cmd.Env = append(os.Environ(), watchdogEnv+"="+strconv.Itoa(pid), workerEnv+"=")
	cmd.ExtraFiles = []*os.File{r}
	cmd.Stderr = stderr
	// Its own session: signals for the agent's or the worker's process
	// group, or the terminal's, do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("starting a watchdog for pid %d: %w", pid, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	return w, done, nil
}

// journal is the worker's end of its watchdog's pipe. A nil journal (no
// watchdog) records nothing.
type journal struct {
	mu   sync.Mutex // guards w and seen
	w    *os.File
	seen map[uint64]bool
}

// openJournal returns the journal the backend handed this worker as fd 3.
func openJournal() *journal {
	if os.Getenv(journalEnv) == "" {
		return nil
	}
	return &journal{w: os.NewFile(3, "journal"), seen: make(map[uint64]bool)}
}

// record journals the original bytes at addr, once per address.
func (j *journal) record(addr uint64, orig []byte) error {
	if j == nil || len(orig) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.seen[addr] || j.w == nil {
		return nil
	}
	if _, err := fmt.Fprintf(j.w, "%x %x\n", addr, orig); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			return fmt.Errorf("the watchdog that would restore this process's code if its Delve worker were killed is not running (the agent's log says why; writing the memory of another user's process needs CAP_DAC_OVERRIDE), so no breakpoint is set: %w", err)
		}
		return fmt.Errorf("journaling a breakpoint for the watchdog: %w", err)
	}
	j.seen[addr] = true
	return nil
}

// detached tells the watchdog that the process is clean, and lets it go.
func (j *journal) detached() {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.w != nil {
		fmt.Fprintln(j.w, "detached")
		j.w.Close()
		j.w = nil
	}
}

// runWatchdog reads the journal from fd 3 until it ends, then repairs pid
// unless the worker said it detached.
func runWatchdog(pid int) error {
	// The agent's terminal or process group may be signalled as it dies:
	// the watchdog's work starts then.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	// Once the worker is gone, a thread of the process may reach an int3
	// within microseconds: be ready. The memory is opened now, and the
	// watchdog, which only sleeps until then, wakes ahead of everything
	// else on the machine (real-time class; root may, others run as is).
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening the memory of pid %d: %w", pid, err)
	}
	defer mem.Close()
	// The class is a thread's: this goroutine keeps this thread and reads
	// the journal with blocking reads on it, not through Go's poller.
	runtime.LockOSThread()
	unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}, 0)
	if err := syscall.SetNonblock(3, false); err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	orig := make(map[uint64][]byte)
	sc := bufio.NewScanner(rawReader(3))
	for sc.Scan() {
		line := sc.Text()
		if line == "detached" {
			return nil
		}
		a, b, ok := strings.Cut(line, " ")
		addr, err := strconv.ParseUint(a, 16, 64)
		if !ok || err != nil || len(b)%2 != 0 {
			continue
		}
		buf, err := hex.DecodeString(b)
		if err != nil {
			continue
		}
		orig[addr] = buf
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil // the process is gone too
	}
	if len(orig) == 0 && !groupStopped(pid) {
		return nil // the worker died before writing anything
	}
	// At once: the process may run into an int3 as soon as the kernel
	// lets it go, which may be before the pipe ends. Then again once the
	// worker's hold is gone, in case it was still writing; a new worker
	// attaches only after this watchdog has exited (Backend.Attach).
	eof := time.Now()
	restored, err := repair(mem, pid, orig)
	took := time.Since(eof)
	tracer := TracerPid(pid)
	for i := 0; i < 5000 && tracer != 0 && TracerPid(pid) == tracer; i++ {
		time.Sleep(time.Millisecond)
	}
	if TracerPid(pid) == 0 {
		if n, err2 := repair(mem, pid, orig); err == nil {
			restored, err = restored+n, err2
		}
	}
	// Then the SIGTRAPs queued by the worker's guard (see guardTraps).
	if TracerPid(pid) == 0 {
		unblocked, n, err2 := clearTraps(pid)
		if unblocked > 0 {
			fmt.Fprintf(os.Stderr, "riptrace watchdog for pid %d: unblocked SIGTRAP in %d threads, took away %d queued SIGTRAP\n", pid, unblocked, n)
		}
		if err == nil {
			err = err2
		}
	}
	// A SIGSTOP Delve sent to stop a thread is delivered once ptrace lets
	// go of it, which stops the whole process: resume it.
	syscall.Kill(pid, syscall.SIGCONT)
	fmt.Fprintf(os.Stderr, "riptrace watchdog for pid %d: its Delve worker died; restored %d of %d breakpoint sites (the first pass took %v; traced by %d after it)\n", pid, restored, len(orig), took, tracer)
	return err
}

// repair writes the original bytes back wherever pid's text still holds an
// int3 of ours, and returns how many sites it restored.
func repair(mem *os.File, pid int, orig map[uint64][]byte) (int, error) {
	n := 0
	for addr, want := range orig {
		cur := make([]byte, len(want))
		if _, err := mem.ReadAt(cur, int64(addr)); err != nil {
			continue
		}
		if cur[0] != 0xCC || want[0] == 0xCC {
			continue
		}
		if _, err := mem.WriteAt(want, int64(addr)); err != nil {
			return n, fmt.Errorf("restoring pid %d's text at %#x: %w", pid, addr, err)
		}
		n++
	}
	return n, nil
}

// TracerPid returns the pid tracing pid (TracerPid in /proc/PID/status), or
// 0 when none does or the process is gone.
func TracerPid(pid int) int {
	st, _ := readStatus(pid, 0)
	return st.Tracer
}

// groupStopped reports whether pid is in a group stop (state T).
func groupStopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'T'
}

// rawReader reads a file descriptor with read(2) on the calling thread.
type rawReader int

func (fd rawReader) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
