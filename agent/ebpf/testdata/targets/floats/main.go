// Command floats sums prices in a loop, in an optimized build, with the
// running total in a floating-point register at the marked line: a value a
// uprobe cannot read. It prints READY, then calls sum every few
// milliseconds.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// sum adds up prices; total stays in an XMM register across the loop.
//
//go:noinline
func sum(prices []float64, rate float64) float64 {
	total := 0.0
	for i, p := range prices {
		total += p * rate
		audit(i, total) //@trace(add)
	}
	return total
}

// audit is where a total would be checked; it only keeps its arguments
// alive.
//
//go:noinline
func audit(i int, total float64) {
	if total < 0 {
		fmt.Println(i, total)
	}
}

func main() {
	every := flag.Duration("every", 5*time.Millisecond, "pause between calls to sum")
	flag.Parse()
	fmt.Printf("READY pid=%d\n", os.Getpid())
	prices := []float64{1.25, 2.5, 4}
	var grand float64
	for {
		grand += sum(prices, 1.5)
		if grand < 0 {
			fmt.Println(grand)
		}
		time.Sleep(*every)
	}
}
