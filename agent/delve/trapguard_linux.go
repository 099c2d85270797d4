package delve

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/go-delve/delve/pkg/proc"
	"golang.org/x/sys/unix"
)

// While a tracepoint's capture runs, the thread that hit it sits in a ptrace
// signal-delivery stop for its SIGTRAP, and Delve cancels that signal only
// when it resumes the thread. If the worker dies in between, the kernel lets
// the thread go and delivers the SIGTRAP: the Go runtime dies of it
// ("SIGTRAP: trace trap"), before any watchdog can act. A manual stop is a
// SIGTRAP too.
//
// So while the process is stopped, every thread has SIGTRAP blocked (the
// kernel then queues a released SIGTRAP instead of delivering it) and the
// threads stopped at a breakpoint have its original instruction back in the
// text (so that, released, they run it rather than trap again). Delve's
// resume puts the int3 back after stepping over it; the masks are restored
// just before. A watchdog that finds a thread with SIGTRAP blocked and
// pending takes the signal away (see clearTraps).

// execPtraceFunc runs fn on the thread that traces the process: ptrace
// requests are accepted only from there. Delve does not export it.
//
//go:linkname execPtraceFunc github.com/go-delve/delve/pkg/proc/native.(*nativeProcess).execPtraceFunc
func execPtraceFunc(dbp unsafe.Pointer, fn func())

const trapBit = 1 << (syscall.SIGTRAP - 1)

// guardedThread is a thread whose signal mask guardTraps changed.
type guardedThread struct {
	tid  int
	mask uint64 // as it was
}

// nativeProcessOf returns Delve's native process behind a thread of it, or
// nil if Delve's layout is not the one this code knows.
func nativeProcessOf(th proc.Thread) (p unsafe.Pointer) {
	defer func() {
		if recover() != nil {
			p = nil
		}
	}()
	v := reflect.ValueOf(th)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("dbp")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.Type().Elem().Name() != "nativeProcess" {
		return nil
	}
	return f.UnsafePointer()
}

// guardTraps blocks SIGTRAP in every thread of the stopped process and
// writes the original instruction back under the threads stopped at a
// breakpoint; unguardTraps undoes the first.
func (t *target) guardTraps() {
	threads := t.grp.Selected.ThreadList()
	if len(threads) == 0 {
		return
	}
	dbp := nativeProcessOf(threads[0])
	if dbp == nil {
		return
	}
	var guarded []guardedThread
	execPtraceFunc(dbp, func() {
		for _, th := range threads {
			mask, err := ptraceSigmask(unix.PTRACE_GETSIGMASK, th.ThreadID(), 0)
			if err != nil || mask&trapBit != 0 {
				continue
			}
			if _, err := ptraceSigmask(unix.PTRACE_SETSIGMASK, th.ThreadID(), mask|trapBit); err == nil {
				guarded = append(guarded, guardedThread{th.ThreadID(), mask})
			}
		}
	})
	mem := t.grp.Selected.Memory()
	for _, th := range threads {
		if bp := th.Breakpoint().Breakpoint; bp != nil && len(bp.OriginalData) > 0 {
			mem.WriteMemory(bp.Addr, bp.OriginalData)
		}
	}
	t.guarded = guarded
}

// unguardTraps restores the masks guardTraps changed.
func (t *target) unguardTraps() {
	guarded := t.guarded
	t.guarded = nil
	threads := t.grp.Selected.ThreadList()
	if len(guarded) == 0 || len(threads) == 0 {
		return
	}
	dbp := nativeProcessOf(threads[0])
	if dbp == nil {
		return
	}
	execPtraceFunc(dbp, func() {
		for _, g := range guarded {
			ptraceSigmask(unix.PTRACE_SETSIGMASK, g.tid, g.mask)
		}
	})
}

// ptraceSigmask gets (returning it) or sets the blocked-signal mask of a
// traced, stopped thread.
func ptraceSigmask(req, tid int, mask uint64) (uint64, error) {
	_, _, errno := syscall.Syscall6(syscall.SYS_PTRACE, uintptr(req), uintptr(tid), 8, uintptr(unsafe.Pointer(&mask)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return mask, nil
}

// clearTraps takes away the SIGTRAPs that a dead worker's guard left queued
// and blocked in pid's threads, and unblocks SIGTRAP again: the Go runtime
// would die of them as soon as a thread restored its signal mask (it does
// around fork, for one). The text must be restored first, and no other
// tracer attached. It returns in how many threads it unblocked SIGTRAP and
// how many signals it took away.
func clearTraps(pid int) (unblocked, cleared int, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		status := fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)
		if pendingSignals(status, "SigBlk:")&trapBit == 0 {
			continue // not blocked by us: a SIGTRAP would have been delivered already
		}
		n, err := clearTrap(pid, tid)
		if err != nil {
			return unblocked, cleared, fmt.Errorf("clearing a queued SIGTRAP in thread %d of pid %d: %w", tid, pid, err)
		}
		unblocked++
		cleared += n
	}
	return unblocked, cleared, nil
}

// clearTrap does clearTraps for one thread. Lock the OS thread first.
func clearTrap(pid, tid int) (int, error) {
	if err := unix.PtraceSeize(tid); err != nil {
		return 0, err
	}
	defer unix.PtraceDetach(tid)
	if err := unix.PtraceInterrupt(tid); err != nil {
		return 0, err
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(tid, &ws, unix.WALL, nil); err != nil {
		return 0, err
	}
	mask, err := ptraceSigmask(unix.PTRACE_GETSIGMASK, tid, 0)
	if err != nil {
		return 0, err
	}
	if _, err := ptraceSigmask(unix.PTRACE_SETSIGMASK, tid, mask&^trapBit); err != nil {
		return 0, err
	}
	status := fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)
	if (pendingSignals(status, "SigPnd:")|pendingSignals(fmt.Sprintf("/proc/%d/status", pid), "ShdPnd:"))&trapBit == 0 {
		return 0, nil
	}
	// Let the thread take the signal, under our trace: the stop for it is
	// where it is cancelled. Other signals met first go on to the thread.
	sig := 0
	for range 50 {
		if err := unix.PtraceCont(tid, sig); err != nil {
			return 0, err
		}
		if _, err := syscall.Wait4(tid, &ws, unix.WALL, nil); err != nil {
			return 0, err
		}
		if !ws.Stopped() {
			return 0, fmt.Errorf("the thread ended (%v)", ws)
		}
		switch event := int(ws) >> 16; {
		case event == 0 && ws.StopSignal() == syscall.SIGTRAP:
			return 1, nil // detaching with no signal cancels it
		case event != 0:
			sig = 0 // an event or group stop, not a signal to pass on
		default:
			sig = int(ws.StopSignal())
		}
	}
	return 0, errors.New("the queued SIGTRAP did not show up")
}

// A stop request is a SIGTRAP sent to the process (Delve's manual stop). One
// that arrives while Delve is already stopping the process for a breakpoint
// finds every thread in a ptrace stop and stays pending on the process.
// Delve then steps the thread at the breakpoint over it on the next resume,
// the kernel delivers the pending SIGTRAP to that thread before it runs its
// instruction, and Delve takes that stop for the end of the step: it puts
// the int3 back under a thread that never left, which traps on it again and
// reports the same call as a second hit. The stop request of the next
// command meets that trap in turn, and so on: 2 to 4 hits per call while
// commands come, the target standing still. takePendingTrap makes a thread
// away from any breakpoint take the SIGTRAP first.

// takePendingTrap takes away a SIGTRAP pending on the stopped process, if
// there is one, by letting one thread not at a breakpoint, with SIGTRAP
// unblocked, take it in a ptrace stop: the kernel delivers pending signals
// before the thread returns to its code, so it runs none. Other signals
// that thread meets first are queued to it again.
func (t *target) takePendingTrap() {
	if pendingSignals(fmt.Sprintf("/proc/%d/status", t.pid), "ShdPnd:")&trapBit == 0 {
		return
	}
	threads := t.grp.Selected.ThreadList()
	if len(threads) == 0 {
		return
	}
	dbp := nativeProcessOf(threads[0])
	if dbp == nil {
		return
	}
	execPtraceFunc(dbp, func() {
		for _, th := range threads {
			if th.Breakpoint().Breakpoint != nil {
				continue
			}
			tid := th.ThreadID()
			mask, err := ptraceSigmask(unix.PTRACE_GETSIGMASK, tid, 0)
			if err != nil || mask&trapBit != 0 {
				continue
			}
			takeTrap(t.pid, tid)
			return
		}
	})
}

// takeTrap resumes the stopped thread tid of pid until it stops for the
// pending SIGTRAP, which it then never gets (the next resume cancels it).
// Call it on the tracing thread.
func takeTrap(pid, tid int) {
	var again []syscall.Signal
	defer func() {
		for _, sig := range again {
			unix.Tgkill(pid, tid, sig)
		}
	}()
	for range 16 {
		if err := unix.PtraceCont(tid, 0); err != nil {
			return
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(tid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
			return
		}
		switch sig := ws.StopSignal(); {
		case int(ws)>>16 != 0:
			// An event stop, not a signal.
		case sig == syscall.SIGTRAP:
			return
		case sig != syscall.SIGSTOP: // a SIGSTOP is Delve's, to stop it: done
			again = append(again, sig)
		}
	}
}
