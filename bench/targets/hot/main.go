// Command hot is the per-hit target of bench/run.sh: on each "run N" line
// on stdin it calls step N times, timing the loop, and prints
// "elapsed n=N ns=T". The benchmark traces the marked line of step and
// compares T with and without the tracepoint.
//
// It prints "READY pid=<pid>" once it reads stdin.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// step is a little arithmetic with an argument and a local to capture; it is
// never inlined so its argument stays an argument in the optimized build.
//
//go:noinline
func step(i int, acc uint64) uint64 {
	x := acc*31 + uint64(i) //@trace(hot)
	return x ^ x>>7
}

func main() {
	fmt.Printf("READY pid=%d\n", os.Getpid())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		arg, ok := strings.CutPrefix(sc.Text(), "run ")
		n, err := strconv.Atoi(arg)
		if !ok || err != nil || n < 0 {
			fmt.Printf("ERROR want \"run N\", got %q\n", sc.Text()) //@trace(cold)
			continue
		}
		acc := uint64(1)
		start := time.Now()
		for i := range n {
			acc = step(i, acc)
		}
		elapsed := time.Since(start)
		fmt.Printf("elapsed n=%d ns=%d\n", n, elapsed.Nanoseconds())
	}
}
