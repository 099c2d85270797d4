// Command selfcheck is a target for the kill tests: it checks its own
// results, so that a tracer that corrupts it (a register or memory changed
// under it) is seen as surely as one that kills or stops it.
//
// Two loops run: hot calls step without pause, cool calls tick 50 times a
// second. Each keeps a running sum and checks it against the closed form
// after every call; a mismatch prints "WRONG …" and exits with status 3.
// A third loop starts a thread five times a second (every -churn), which
// ends at once (a goroutine that ends locked to its thread takes the
// thread with it): a tracer must follow threads as they come and go.
//
// It prints "READY pid=<pid>" once running and "ALIVE hot=<calls>
// cool=<calls>" every 100 ms. A test sees a stopped process by those lines
// ceasing (a stopped process cannot say so itself).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

var hotCalls, coolCalls atomic.Int64

// step adds i to acc; hot traces it.
//
//go:noinline
func step(acc, i uint64) uint64 {
	return acc + i*i //@trace(hot)
}

// tick adds seq to acc; cool traces it.
//
//go:noinline
func tick(acc, seq uint64) uint64 {
	return acc + 3*seq //@trace(cool)
}

func main() {
	rate := flag.Int("rate", 50, "calls to tick per second")
	churn := flag.Duration("churn", 200*time.Millisecond, "how often a thread starts and ends")
	flag.Parse()
	fmt.Printf("READY pid=%d\n", os.Getpid())
	go func() {
		var acc uint64
		for i := uint64(0); ; i++ {
			acc = step(acc, i)
			// Σ k² for k ≤ i, modulo 2⁶⁴ as the sum wraps.
			if want := sumSquares(i); acc != want {
				wrong("hot", i, acc, want)
			}
			hotCalls.Store(int64(i + 1))
		}
	}()
	go func() {
		var acc uint64
		period := time.Second / time.Duration(*rate)
		start := time.Now()
		for seq := uint64(0); ; seq++ {
			acc = tick(acc, seq)
			if want := 3 * (seq * (seq + 1) / 2); acc != want {
				wrong("cool", seq, acc, want)
			}
			coolCalls.Store(int64(seq + 1))
			if d := time.Until(start.Add(time.Duration(seq+1) * period)); d > 0 {
				time.Sleep(d)
			}
		}
	}()
	go func() {
		for range time.Tick(*churn) {
			done := make(chan struct{})
			go func() {
				runtime.LockOSThread()
				close(done)
			}()
			<-done
		}
	}()
	for range time.Tick(100 * time.Millisecond) {
		fmt.Printf("ALIVE hot=%d cool=%d\n", hotCalls.Load(), coolCalls.Load())
	}
}

// sumSquares is Σ k² for k in [0, n], modulo 2⁶⁴: n(n+1)(2n+1)/6 with the
// division done before the products can wrap.
func sumSquares(n uint64) uint64 {
	a, b, c := n, n+1, 2*n+1
	switch {
	case a%2 == 0:
		a /= 2
	default:
		b /= 2
	}
	switch {
	case a%3 == 0:
		a /= 3
	case b%3 == 0:
		b /= 3
	default:
		c /= 3
	}
	return a * b * c
}

func wrong(loop string, i, got, want uint64) {
	fmt.Printf("WRONG %s at %d: %d, want %d\n", loop, i, got, want)
	os.Exit(3)
}
