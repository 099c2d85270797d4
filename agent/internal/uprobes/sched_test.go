package uprobes

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestThreadSched reads a thread of this process that shares one CPU
// with another busy thread: it has run, and waited for the CPU. A thread
// that is not there reads as gone.
func TestThreadSched(t *testing.T) {
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/schedstat"); err != nil {
		t.Skipf("the kernel keeps no scheduler statistics here: %v", err)
	}
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Fatalf("reading this thread's CPUs: %v", err)
	}
	cpu := 0
	for !cpus.IsSet(cpu) {
		cpu++
	}
	var stop atomic.Bool
	defer stop.Store(true)
	tids := make(chan int, 2)
	for range 2 {
		go func() {
			runtime.LockOSThread() // the thread ends with the goroutine
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				t.Errorf("pinning a thread to CPU %d: %v", cpu, err)
			}
			tids <- unix.Gettid()
			for !stop.Load() {
			}
		}()
	}
	tid := <-tids
	<-tids
	sched := ThreadSched(os.Getpid())
	run0, wait0, ok := sched(tid)
	if !ok {
		t.Fatalf("thread %d of this process reads as gone", tid)
	}
	testsupport.CheckFor(t, time.Minute, 10*time.Millisecond, func() error {
		run, wait, ok := sched(tid)
		switch {
		case !ok:
			return fmt.Errorf("thread %d of this process reads as gone", tid)
		case run-run0 < 100*time.Millisecond || wait-wait0 < 25*time.Millisecond:
			return fmt.Errorf("beside another busy thread on its CPU, thread %d ran %v and waited %v; want 100 ms and 25 ms at least", tid, run-run0, wait-wait0)
		}
		return nil
	})
	if _, _, ok := sched(1 << 30); ok {
		t.Errorf("thread %d, which is not there, reads as there", 1<<30)
	}
}
