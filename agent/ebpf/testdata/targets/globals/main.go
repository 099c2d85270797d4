// Command globals changes package variables right after its marked line
// runs, for a hit's values to be read after they changed. It prints READY,
// then on each SIGUSR1 (the k-th, from 1) sets stamp to 1000+k and
// limits.max to 2000+k, runs the marked line, sets both to -k and prints
// "STAMPED k=<k>".
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

type config struct{ max, min int }

// Initialized, so that they live in the executable's writable data
// mappings, not in its zeroed ones.
var (
	stamp  = 7
	limits = config{max: 9, min: 1}
)

var sink int

//go:noinline
func mark(k int, c *config) {
	sink += k + c.min //@trace(stamp)
}

func main() {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	fmt.Printf("READY pid=%d\n", os.Getpid())
	for k := 1; ; k++ {
		<-usr1
		stamp, limits.max = 1000+k, 2000+k
		mark(k, &limits)
		stamp, limits.max = -k, -k
		fmt.Printf("STAMPED k=%d\n", k)
	}
}
