package delve

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"

	"github.com/go-delve/delve/pkg/proc"
	_ "github.com/go-delve/delve/pkg/proc/native" // the go:linkname targets below
	"golang.org/x/sys/unix"
)

// Delve's attach (native.Attach) lists /proc/PID/task once, then attaches
// to each thread it listed, and only once a thread is attached and stopped
// has the kernel trace the threads it starts (PTRACE_O_TRACECLONE). Two
// things go wrong against a program that starts and ends threads (a
// goroutine locked to its thread that returns ends the thread):
//
//   - A thread not reached yet that starts a thread meanwhile, or one inside
//     clone() when its attach's SIGSTOP comes, leaves the new thread untraced
//     and unlisted. It runs on after the attach, and the first int3 it runs
//     into kills the process: nobody cancels its SIGTRAP, and the Go runtime
//     dies of it ("SIGTRAP: trace trap"). Against a target at GOMAXPROCS=16
//     starting a thread every 100 µs, 8 of 300 attaches left one.
//   - A listed thread that ends before Delve reaches it fails the whole
//     attach ("could not attach to new thread N no such process"); against
//     that target on a loaded machine, nine tries in ten did, and in a CI
//     run 30 tries in a row.
//
// So attach does what native.Attach does, through Delve's own unexported
// steps, but attaches to the threads itself first: it lists them again
// until a pass finds none it does not know, attaching each new one the way
// Delve attaches those it lists, skipping those that ended, and letting go
// of one whose id a thread of another process took meanwhile
// (attachThread). Every thread
// attached is then stopped, the kernel tracing the threads it starts: only
// an untraced thread can start one, and each pass stops those it finds, so
// the passes end, and none can end or start after. Delve's own listing then
// finds every thread known. (Uprobe mode does the same with PTRACE_SEIZE:
// see holdTarget.seize.)

//go:linkname newNativeProcess github.com/go-delve/delve/pkg/proc/native.newProcess
func newNativeProcess(pid int) unsafe.Pointer

//go:linkname nativeWait github.com/go-delve/delve/pkg/proc/native.(*nativeProcess).wait
func nativeWait(dbp unsafe.Pointer, pid, options int) (int, unsafe.Pointer, error)

//go:linkname nativeInitialize github.com/go-delve/delve/pkg/proc/native.(*nativeProcess).initialize
func nativeInitialize(dbp unsafe.Pointer, path string, debugInfoDirs []string) (*proc.TargetGroup, error)

//go:linkname detachWithoutGroup github.com/go-delve/delve/pkg/proc/native.detachWithoutGroup
func detachWithoutGroup(dbp unsafe.Pointer, kill bool) error

// addThread attaches to thread tid of the process (attach false: it is
// traced already) and counts it among its threads. Delve does not export
// it.
//
//go:linkname addThread github.com/go-delve/delve/pkg/proc/native.(*nativeProcess).addThread
func addThread(dbp unsafe.Pointer, tid int, attach bool) (unsafe.Pointer, error)

// attachThread attaches dbp to thread tid of pid and waits for its stop,
// as Delve's addThread does with attach set. A thread listed in
// /proc/PID/task may end before the attach, and its id go to a thread of
// another process: a host that starts threads fast reuses ids within
// seconds (pid_max is 32768 here; three test targets start a thread every
// 0.1–1 ms, and a CI run saw a thread of one traced by the worker of
// another test). ours is false for such a thread, let go at once. One the
// kernel traces for dbp already (PTRACE_O_TRACECLONE: a thread it traces
// started it) refuses the attach, and is ours: addThread waits for its
// first stop.
func attachThread(dbp unsafe.Pointer, pid, tid int) (ours bool, err error) {
	tracer := 0
	execPtraceFunc(dbp, func() { tracer, err = unix.Gettid(), unix.PtraceAttach(tid) })
	if errors.Is(err, unix.EPERM) && tracedBy(pid, tid, tracer) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
		return false, err
	}
	if ws.Exited() || ws.Signaled() {
		return false, fmt.Errorf("thread %d ended", tid)
	}
	if _, ok := readStatus(pid, tid); !ok {
		letGo(dbp, tid, ws)
		return false, nil
	}
	return true, nil
}

// letGo detaches dbp from thread tid, attached and in the stop ws, without
// leaving the attach's SIGSTOP pending (it would stop the thread's process
// once detached): a signal that stopped it first is delivered, and the
// SIGSTOP's stop waited for.
func letGo(dbp unsafe.Pointer, tid int, ws unix.WaitStatus) {
	for i := 0; i < 8 && ws.Stopped() && ws.StopSignal() != unix.SIGSTOP; i++ {
		execPtraceFunc(dbp, func() { unix.PtraceCont(tid, int(ws.StopSignal())) })
		if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
			return
		}
	}
	if ws.Stopped() {
		execPtraceFunc(dbp, func() { unix.PtraceDetach(tid) })
	}
}

// threadsWait bounds how long traceAllThreads waits for a thread that
// refuses the attach to be gone: a thread that is exiting does, for as long
// as it takes the kernel to end it (a scheduler's turn, on a loaded
// machine).
const threadsWait = 10 * time.Second

// delveAttach is native.Attach(pid, nil, nil) with every thread attached
// before Delve lists them (see above). The target is a Go program: Delve's
// breakpoint for a non-Go program's shared libraries is not set.
func delveAttach(pid int) (*proc.TargetGroup, error) {
	dbp := newNativeProcess(pid)
	var err error
	execPtraceFunc(dbp, func() { err = unix.PtraceAttach(pid) })
	if err != nil {
		return nil, err
	}
	if _, _, err = nativeWait(dbp, pid, 0); err != nil {
		return nil, err
	}
	if err = traceAllThreads(dbp, pid); err == nil {
		var grp *proc.TargetGroup
		if grp, err = nativeInitialize(dbp, fmt.Sprintf("/proc/%d/exe", pid), nil); err == nil {
			return grp, nil
		}
	}
	detachWithoutGroup(dbp, false)
	return nil, err
}

// traceAllThreads attaches to every thread of the process dbp has attached
// to the main thread of, until none is left out. A thread that ended
// meanwhile is skipped.
func traceAllThreads(dbp unsafe.Pointer, pid int) error {
	if _, err := addThread(dbp, pid, false); err != nil {
		return err
	}
	known := map[int]bool{pid: true}
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
			ours, err := attachThread(dbp, pid, tid)
			if err == nil && ours {
				_, err = addThread(dbp, tid, false)
			}
			if err != nil {
				// Ended meanwhile (ESRCH, or reaped after the attach), or
				// ending (the kernel refuses to attach to a thread that
				// exits: EPERM): the next pass finds it gone, or tries
				// again.
				lastErr = err
				continue
			}
			if !ours {
				continue // gone from the process: the next pass lists it no more
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
