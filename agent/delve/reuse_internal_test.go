package delve

import (
	"fmt"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/riptrace/riptrace/internal/testsupport"
	"golang.org/x/sys/unix"
)

// TestAttachThreadOfAnotherProcess: a thread id listed in /proc/PID/task
// may, once that thread ends, go to a thread of another process before the
// attach reaches it (a CI run saw a test target's thread traced by another
// test's worker). Both ways of attaching to a listed thread let such a one
// go at once, traced by nothing and running: int3 mode's (attachThread)
// and uprobe mode's (the seize, then release). The process's own threads,
// one the tracer traces already among them, are kept.
func TestAttachThreadOfAnotherProcess(t *testing.T) {
	own, other := sleeper(t), sleeper(t)

	dbp := newNativeProcess(own)
	var err error
	execPtraceFunc(dbp, func() { err = unix.PtraceAttach(own) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { execPtraceFunc(dbp, func() { unix.PtraceDetach(own) }) })
	if _, _, err := nativeWait(dbp, own, 0); err != nil {
		t.Fatal(err)
	}
	if ours, err := attachThread(dbp, own, own); !ours || err != nil {
		t.Fatalf("the process's own main thread, traced already: ours %v, %v; want it kept", ours, err)
	}
	if ours, err := attachThread(dbp, own, other); ours || err != nil {
		t.Fatalf("a thread of another process: ours %v, %v; want it let go", ours, err)
	}
	checkFree(t, other)

	// Uprobe mode seizes from the thread that serves the process's stops,
	// which stays until the check: a thread that ends lets its tracees go.
	done, end := make(chan error), make(chan struct{})
	defer close(end)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		defer func() { <-end }()
		_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(other), 0, 0, 0, 0)
		if errno != 0 {
			done <- errno
			return
		}
		if tracedBy(own, other, unix.Gettid()) {
			done <- fmt.Errorf("a thread of another process passed for one of pid %d", own)
			return
		}
		release(other)
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkFree(t, other)
}

// sleeper starts a process that waits, for the test's length, and returns
// its pid.
func sleeper(t *testing.T) int {
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// checkFree fails the test unless pid comes to be traced by nothing and
// not stopped.
func checkFree(t *testing.T, pid int) {
	t.Helper()
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st, _ := readStatus(pid, 0); st.Tracer != 0 || st.Stopped() {
			return fmt.Errorf("pid %d is %s, traced by %d", pid, st.State, st.Tracer)
		}
		return nil
	})
}
