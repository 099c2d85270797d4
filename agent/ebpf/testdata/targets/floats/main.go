// Command floats keeps float64 values in floating-point registers at
// marked lines of an optimized build, out of a uprobe's reach. It prints
// READY, then calls sum every few milliseconds. On SIGUSR1 it runs a
// burst: charge with n = 1000*k + i for i from 1 to -burst in burst k
// (from 1), and payA (i even) or payB (i odd) with the same n, then
// prints "BURST k=<k> calls=<n>".
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// sum adds up prices; total stays in an XMM register across the loop, at
// every instruction of the marked line.
//
//go:noinline
func sum(prices []float64, rate float64) float64 {
	total := 0.0
	for i, p := range prices {
		total += p * rate //@trace(mul)
		audit(i, total)   //@trace(add)
	}
	return total
}

// charge applies a fee. amount arrives in X0, where it is at the first
// instruction of the marked line; the fee's multiplication overwrites X0
// before the call, and from there to the call amount is only on the
// stack, where it was spilled.
//
//go:noinline
func charge(amount float64, n int) float64 {
	if n > 0 {
		audit(n, amount*1.5) //@trace(fee)
	}
	return amount
}

// pay is inlined into payA and payB: its marked line has a copy in each.
// In payA's copy amount is in X0 at the line's first instruction and on
// the stack at the call, as in charge; in payB's it is amount+1, in X1 up
// to the call.
func pay(amount float64, n int) {
	if n > 0 {
		audit(n, amount*1.5) //@trace(pay)
	}
}

//go:noinline
func payA(amount float64, n int) float64 {
	pay(amount, n)
	return amount
}

//go:noinline
func payB(amount float64, n int) float64 {
	pay(amount+1, n)
	return amount
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
	burst := flag.Int("burst", 20, "calls to charge in a burst")
	flag.Parse()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	fmt.Printf("READY pid=%d\n", os.Getpid())
	prices := []float64{1.25, 2.5, 4}
	var grand float64
	for k := 1; ; {
		select {
		case <-usr1:
			for i := 1; i <= *burst; i++ {
				n := 1000*k + i
				grand += charge(float64(n)/4, n)
				if i%2 == 0 {
					grand += payA(float64(n)/4, n)
				} else {
					grand += payB(float64(n)/4, n)
				}
			}
			fmt.Printf("BURST k=%d calls=%d\n", k, *burst)
			k++
		default:
		}
		grand += sum(prices, 1.5)
		if grand < 0 {
			fmt.Println(grand)
		}
		time.Sleep(*every)
	}
}
