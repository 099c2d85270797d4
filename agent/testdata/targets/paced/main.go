// Command paced is a target for the agent's fault tests: it calls tick with a
// counter at a steady rate (1000 calls/s by default), so that a tracepoint on
// tick reports a known sequence and a test can check that every call arrived
// exactly once and in order.
//
// The pace is kept against the clock, not by sleeping a fixed time between
// calls: a target slowed by stops catches up, so the counter says how many
// calls were due. It prints "READY pid=<pid>" once running and "ALIVE n=<calls>"
// every second, from a function, second, that tests can trace too.
//
// SIGUSR1 stops the calls for good and prints "PAUSED n=<calls>"; each
// SIGUSR2 after that makes one more call and prints "STEP n=<calls>". A
// test stops the traffic this way to count what was lost, and steps once
// to have a last hit carry every drop before it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

var calls atomic.Int64

// tick is what the tests trace: seq counts the calls from 0.
//
//go:noinline
func tick(seq int) {
	calls.Store(int64(seq) + 1) //@trace(tick)
}

// second runs once a second.
//
//go:noinline
func second(n int64) {
	fmt.Printf("ALIVE n=%d\n", n) //@trace(second)
}

func main() {
	rate := flag.Int("rate", 1000, "calls to tick per second")
	flag.Parse()

	fmt.Printf("READY pid=%d\n", os.Getpid())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		fmt.Printf("EXIT n=%d\n", calls.Load())
		os.Exit(0)
	}()
	go func() {
		for range time.Tick(time.Second) {
			second(calls.Load())
		}
	}()

	pause, step := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(pause, syscall.SIGUSR1)
	signal.Notify(step, syscall.SIGUSR2)

	period := time.Second / time.Duration(*rate)
	start := time.Now()
	for seq := 0; ; seq++ {
		select {
		case <-pause:
			fmt.Printf("PAUSED n=%d\n", seq)
			for range step {
				tick(seq)
				seq++
				fmt.Printf("STEP n=%d\n", seq)
			}
		default:
		}
		tick(seq)
		if d := time.Until(start.Add(time.Duration(seq+1) * period)); d > 0 {
			time.Sleep(d)
		}
	}
}
