package ebpf

import (
	"os"
	"runtime"
	"sync"
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
	if unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), decodeNice) == nil {
		spareP.add()
		defer spareP.remove()
	}
	fn()
	// Left locked: the thread ends with this goroutine, niced as it is.
}

// spareP adds a P (runtime.GOMAXPROCS) for each niced thread while it
// lives.
//
// A goroutine running Go code holds one of the process's Ps, and the Go
// scheduler takes a P back from a thread only in a system call, never
// from one the kernel has descheduled. On a busy host the kernel leaves a
// thread at nice 19 waiting for hundreds of milliseconds, or seconds, in
// the middle of a decode: the P waits with it, and with GOMAXPROCS 2 (a
// 2-CPU host) the rest of the agent (heartbeats, the NATS client,
// watermarks) had one P left, or none with two executables traced: in
// TestNicedDecoderKeepsAgentScheduled, a goroutine sleeping 1 ms woke 14x
// later at the 99th percentile with two decoders niced than with them at
// the agent's priority. One P more per niced thread gives the rest of
// the agent as many Ps as CPUs, whatever the niced threads wait for. Its
// cost: while a niced thread waits for work, its P lets one more thread of
// the agent run Go code at the agent's priority (the reader's decodes,
// when the niced thread fell behind, already do). Nicing less would only shorten the
// stalls, and the point of the nice (the decoder yields the CPU to the
// services traced) would go.
//
// What a P more cannot help: the GC stops the world twice a cycle, and
// waits for every P, the niced threads' too, to stop; the test saw those
// waits reach 537 ms with the decoders at nice 19, and 940 ms later. At
// nice 10 they were as at the agent's priority (README, Measured); what
// a nicer decoder costs the traced service is not measured yet, so it
// stays at 19.
//
// Setting GOMAXPROCS stops the runtime's automatic updates (to the CPU
// quota and affinity); once the last niced thread ends they are restored,
// unless the environment or someone else set GOMAXPROCS meanwhile.
var spareP spares

// spares counts the niced threads and the Ps added for them.
type spares struct {
	mu   sync.Mutex // guards the fields below and each change of GOMAXPROCS
	n    int        // niced threads living
	base int        // GOMAXPROCS before the first of them
}

// add adds a P for a niced thread that starts.
func (s *spares) add() {
	s.mu.Lock()
	defer s.mu.Unlock()
	procs := runtime.GOMAXPROCS(0)
	if s.n == 0 {
		s.base = procs
	}
	s.n++
	runtime.GOMAXPROCS(procs + 1)
}

// remove takes back the P of a niced thread that ends.
func (s *spares) remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	procs := max(runtime.GOMAXPROCS(0)-1, 1)
	if s.n == 0 && procs == s.base && os.Getenv("GOMAXPROCS") == "" {
		// Back to where the first niced thread found it: the default,
		// updated automatically again.
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	runtime.GOMAXPROCS(procs)
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
