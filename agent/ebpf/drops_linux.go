package ebpf

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// bucketCounts is a target's buckets map (probe.c's struct bucket, one per
// tracepoint), mapped into the agent's memory, so that the reader can take
// the counts of dropped hits with the same atomic exchange the BPF program
// takes them with (take_count): each drop is reported once, by whichever
// takes it first.
type bucketCounts []byte

const bucketSize = unsafe.Sizeof(bpfBucket{})

// mapBuckets maps m, the buckets map, made with BPF_F_MMAPABLE.
func mapBuckets(m *ebpf.Map) (bucketCounts, error) {
	if m.ValueSize() != uint32(bucketSize) {
		return nil, fmt.Errorf("the buckets map holds %d bytes a bucket, want %d", m.ValueSize(), bucketSize)
	}
	page := os.Getpagesize()
	size := (int(m.MaxEntries())*int(bucketSize) + page - 1) / page * page
	b, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the rate limits' counts: %w", err)
	}
	return b, nil
}

func (b bucketCounts) unmap() { unix.Munmap(b) }

// take returns the hits the bucket in slot dropped since its last hit
// that reached user space, and of them those the full ring buffer refused
// and those that found their CPU's scratch busy, and zeroes them.
func (b bucketCounts) take(slot uint32) (dropped, full, nested uint64) {
	field := func(off uintptr) *uint64 {
		return (*uint64)(unsafe.Pointer(&b[uintptr(slot)*bucketSize+off]))
	}
	p := field(unsafe.Offsetof(bpfBucket{}.Dropped))
	if atomic.LoadUint64(p) == 0 {
		return 0, 0, 0
	}
	dropped = atomic.SwapUint64(p, 0)
	full = atomic.SwapUint64(field(unsafe.Offsetof(bpfBucket{}.Full)), 0)
	nested = atomic.SwapUint64(field(unsafe.Offsetof(bpfBucket{}.Nested)), 0)
	return dropped, full, nested
}

// sweepDrops reports, for each tracepoint of x's processes with no rate
// limit, the drops not reported yet, in a notice (agent.Hit.DropsOnly):
// those its bucket counted since its last hit reached user space (refused
// by the full ring buffer, or finding their CPU's scratch busy), and those
// of records decoded since its last hit left. Each went with the next hit
// that left, which may not come for long: a burst that filled the ring
// buffer and ended left its last drops untold (TestRingFull with no hit
// after its burst: 6,440 of 20,000 neither delivered nor counted dropped
// 2 minutes after). The
// reader calls it when it leaves the ring buffer empty: every record
// before is decoded, and its hits sent.
//
// A rate-limited tracepoint's drops still go with its next hit: its
// probes go out and back each window, and the estimate of the hits run
// meanwhile is made against the hits and drops each arming counted
// (agent.Disarm); drops told apart from them broke that accounting
// (TestDisarm, TestDisarmEstimate, 1 CI run in 2). At 50 hits a second
// (the default) such a line does not fill the ring buffer. Where its line
// went quiet after its probes went back in, they are told then
// (settleQuiet).
func (x *executable) sweepDrops() {
	var notices []sendHit
	x.mu.Lock()
	for t := range x.targets {
		for _, tp := range t.tps {
			if tp.spec.Limits.MaxHitsPerSecond > 0 {
				continue
			}
			if n := t.dropsNotice(tp); n.Dropped > 0 {
				notices = append(notices, sendHit{t, n})
			}
		}
	}
	x.unlock()
	for _, n := range notices {
		n.t.send(n.h)
	}
}

// dropsNotice takes what tp's bucket counted dropped and returns a notice
// (agent.Hit.DropsOnly) of every drop tp owes, owing nothing after. Lock
// should be held.
func (t *target) dropsNotice(tp *tracepoint) agent.Hit {
	tp.owe(t.counts.take(tp.bucket))
	n := agent.Hit{Hit: fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid}, DropsOnly: true}
	n.Dropped, n.Throttle = tp.settle()
	return n
}
