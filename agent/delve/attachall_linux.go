package delve

import (
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"

	"github.com/go-delve/delve/pkg/proc"
)

// Delve's attach lists /proc/PID/task once, then attaches to each thread it
// listed, and only once a thread is attached and stopped has the kernel
// trace the threads it starts (PTRACE_O_TRACECLONE). A thread not reached
// yet that starts a thread meanwhile, or one inside clone() when its
// attach's SIGSTOP comes, leaves the new thread untraced and unlisted. Such
// a thread runs on after the attach, and the first int3 it runs into kills
// the process: nobody cancels its SIGTRAP, and the Go runtime dies of it
// ("SIGTRAP: trace trap"). Against a target starting and ending threads
// fast (GOMAXPROCS=16, a thread every 100 µs), 4 of 100 attaches left one.
//
// So after Delve's attach, traceAllThreads lists the threads again until a
// pass finds none Delve does not know, attaching each new one the way Delve
// attaches those it listed. Every thread Delve knows is then stopped, the
// kernel tracing the threads it starts: only an untraced thread can start
// one, and each pass stops those it finds, so the passes end. (Uprobe mode
// does the same with PTRACE_SEIZE: see holdTarget.seize.)

// addThread attaches to thread tid of the process (attach false: it is
// traced already) and counts it among its threads. Delve does not export
// it.
//
//go:linkname addThread github.com/go-delve/delve/pkg/proc/native.(*nativeProcess).addThread
func addThread(dbp unsafe.Pointer, tid int, attach bool) (unsafe.Pointer, error)

// threadsWait bounds how long traceAllThreads waits for a thread that
// refuses the attach to be gone: a thread that is exiting does, for as long
// as it takes the kernel to end it (a scheduler's turn, on a loaded
// machine).
const threadsWait = 10 * time.Second

// traceAllThreads attaches to the threads of grp's stopped process that
// Delve's attach missed. A thread that ended meanwhile is skipped.
func traceAllThreads(grp *proc.TargetGroup, pid int) error {
	threads := grp.Selected.ThreadList()
	if len(threads) == 0 {
		return nil
	}
	dbp := nativeProcessOf(threads[0])
	if dbp == nil {
		return nil // a Delve this code does not know: its attach as it is
	}
	known := make(map[int]bool, len(threads))
	for _, th := range threads {
		known[th.ThreadID()] = true
	}
	deadline := time.Now().Add(threadsWait)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err // the process is gone
		}
		missed, added := false, false
		var lastErr error
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil || known[tid] {
				continue
			}
			missed = true
			if _, err := addThread(dbp, tid, true); err != nil {
				// Ended meanwhile (ESRCH, or reaped after the attach), or
				// ending (the kernel refuses to attach to a thread that
				// exits: EPERM, which Delve lets pass, then ECHILD from its
				// wait): the next pass finds it gone, or tries again.
				lastErr = err
				continue
			}
			known[tid] = true
			added = true
		}
		switch {
		case !missed:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("a thread of pid %d stays untraced: %v", pid, lastErr)
		case !added:
			// Only threads that refused the attach: let them end.
			time.Sleep(time.Millisecond)
		}
	}
}
