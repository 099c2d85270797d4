package ebpf

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// decodeNice is the nice value of the threads that decode hits.
const decodeNice = 19

// yielding runs fn on a thread of its own at the lowest priority, and ends
// the thread with it: decoding hits must not take a CPU from the processes
// being traced. The BPF program has copied what it needs before the traced
// thread goes on, so decoding can wait: when the host is busy, hits wait in
// the ring buffer (and, if it fills, are dropped and counted) rather than
// the services wait for the agent. Measured on make bench's hot loop (2
// CPUs), the agent decoding beside the traced loop made each hit cost it
// 1.5-2.7x a bare uprobe; with the agent stopped meanwhile, 0.8-1.05x.
func yielding(fn func()) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// The main thread outlives a goroutine that ends locked to it:
		// hold it, so that fn's goroutine gets another.
		done := make(chan struct{})
		go func() {
			defer close(done)
			yielding(fn)
		}()
		<-done
		runtime.UnlockOSThread()
		return
	}
	// A failure (a seccomp filter, say) leaves the thread as it was:
	// slower for the target, not wrong.
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), decodeNice)
	fn()
	// Left locked: the thread ends with this goroutine, niced as it is.
}
