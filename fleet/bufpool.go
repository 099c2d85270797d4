package fleet

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// bufPool keeps the buffers of hits an Outbox is done with (stored or
// lost) for the next hits it encodes. An agent encodes each hit once and
// keeps it until the stream acknowledges it; made fresh each time, those
// buffers were half of the agent's allocation per hit on make bench's hot
// loop (1.1 of 2.2 kB), each a new object for the collector, and every
// collection cycle's new heap was touched for the first time through
// them: page faults, which cost 12-15 µs each on a VM with page-table
// isolation.
//
// Buffers come in size classes a quarter of a power of two apart, from
// 256 B to 1 MiB, so that a hit's buffer wastes at most a fifth of its
// size; a larger one is made and left to the collector. Each class is a
// sync.Pool: what a drained backlog leaves goes to the collector once it
// is unused for two collections.
type bufPool struct {
	classes [bufClasses]sync.Pool // of *msgBuf
	reused  atomic.Int64          // buffers get gave again
}

// msgBuf is a buffer of a bufPool's.
type msgBuf struct {
	b     []byte
	class int // -1: too large to keep
}

const (
	bufMinShift = 8  // the smallest class: 256 B
	bufMaxShift = 20 // the largest: 1 MiB
	bufClasses  = (bufMaxShift-bufMinShift)*4 + 1
)

// bufClass returns the smallest class whose buffers hold n bytes, -1
// for n over the largest.
func bufClass(n int) int {
	if n <= 1<<bufMinShift {
		return 0
	}
	if n > 1<<bufMaxShift {
		return -1
	}
	e := bits.Len(uint(n-1)) - 1 // 2^e < n <= 2^(e+1)
	q := (n - 1<<e + 1<<(e-2) - 1) >> (e - 2)
	return (e-bufMinShift)*4 + q
}

// bufSize returns the size of class's buffers.
func bufSize(class int) int {
	if class == 0 {
		return 1 << bufMinShift
	}
	e, q := bufMinShift+(class-1)/4, (class-1)%4+1
	return 1<<e + q<<(e-2)
}

// get returns a buffer with room for n bytes at least, empty.
func (p *bufPool) get(n int) *msgBuf {
	class := bufClass(n)
	if class < 0 {
		return &msgBuf{b: make([]byte, 0, n), class: -1}
	}
	if m, _ := p.classes[class].Get().(*msgBuf); m != nil {
		p.reused.Add(1)
		m.b = m.b[:0]
		return m
	}
	return &msgBuf{b: make([]byte, 0, bufSize(class)), class: class}
}

// put keeps m, which nothing reads any more, for a later get, unless it
// is too large to keep or was grown out of its class.
func (p *bufPool) put(m *msgBuf) {
	if m.class >= 0 && cap(m.b) == bufSize(m.class) {
		p.classes[m.class].Put(m)
	}
}
