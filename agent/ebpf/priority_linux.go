package ebpf

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// decodeNice is the nice value of the threads that decode hits.
const decodeNice = 19

// lagBound is how long a hit may wait for the reader at decodeNice before
// it is decoded at the agent's own priority. Nice 19 against busy services
// is a share of about 1.5% of a CPU per competing thread: on a host kept
// busy (the load a user traces to understand), a niced reader would never
// catch up, and every hit would wait seconds and then be dropped by a full
// ring buffer. With 8 busy loops on 2 CPUs, TestBurst received 522 of its
// 1600 hits before this bound, all of them after it. The bound, with the
// reader's checks every lagCheck and a decode, must stay under the
// agent's promise to the timeline (agent.DefaultTimelineLag, 150 ms): at
// 100 ms, make demo's hits came 200-250 ms after they ran while other
// tests loaded the machine, and were shown late.
const (
	lagBound = 50 * time.Millisecond
	lagCheck = 10 * time.Millisecond
)

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

// niced runs jobs, one at a time, on a thread of its own at decodeNice,
// until stop.
type niced struct {
	jobs chan *nicedJob
}

// nicedJob is a function for the niced thread, which its sender may take
// back until the thread begins it.
type nicedJob struct {
	state atomic.Int32 // 0 waiting, 1 begun by the niced thread, 2 taken back
	fn    func() readState
	done  chan readState // fn's result, once begun
}

func startNiced() *niced {
	n := &niced{jobs: make(chan *nicedJob, 8)}
	go yielding(func() {
		for j := range n.jobs {
			if j.state.CompareAndSwap(0, 1) {
				j.done <- j.fn()
			}
		}
	})
	return n
}

// start queues fn for the niced thread, or returns nil if jobs taken back
// fill its queue (the thread has not woken for a while).
func (n *niced) start(fn func() readState) *nicedJob {
	j := &nicedJob{fn: fn, done: make(chan readState, 1)}
	select {
	case n.jobs <- j:
		return j
	default:
		return nil
	}
}

// takeBack reports whether j was taken back before the niced thread began
// it: then it never will.
func (j *nicedJob) takeBack() bool { return j.state.CompareAndSwap(0, 2) }

func (n *niced) stop() { close(n.jobs) }
