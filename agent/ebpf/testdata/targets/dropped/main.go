// Command dropped holds, at its marked lines of an optimized build, values
// of which the compiler keeps only a part: the rest is dead there, and
// DWARF describes it as an empty piece. A debugger that reads such a part
// as zero shows a plausible and wrong value. It prints READY, then calls
// each function every few milliseconds with values that depend on a
// counter k (from 1): pair.a is k and pair.b is k+6; xs is k, k+1, k+2
// with cap 3; s is "hello"; x holds k+40 as an int. It also calls kinds
// with k and "k<k>" in turn, and inlinedPairs, inlined, with k.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"
)

type pair struct{ a, b int }

var sink int

//go:noinline
func use(x int) { sink += x }

//go:noinline
func usePtr(p unsafe.Pointer) {
	if p == nil {
		sink++
	}
}

// pairs uses p.b before the marked line and only p.a after it.
//
//go:noinline
func pairs(k int) int {
	p := pair{a: k, b: k + 6}
	use(p.b)
	use(p.a) //@trace(pair)
	use(p.a)
	return p.a
}

// kept is what inlinedPairs keeps of p.
var kept int

// inlinedPairs is pairs as the compiler inlines it into its caller (its
// one call leaves it within the inliner's budget): it uses p.b before the
// marked line and only p.a after it. Delve reads p there from the
// inlined call's own DWARF entry, so whether a condition reads a part left
// out is told at the first hit, not from DWARF alone.
func inlinedPairs(k int) int {
	p := pair{a: k, b: k + 6}
	use(p.b)
	kept = p.a //@trace(inlined)
	return p.a
}

//go:noinline
func callsInlined(k int) int { return inlinedPairs(k) + 1 }

// slices uses the cap of xs nowhere.
//
//go:noinline
func slices(xs []int) {
	use(xs[1])
	use(len(xs)) //@trace(slice)
	use(xs[0])
}

// strings uses only the data of s after the marked line.
//
//go:noinline
func strings(s string) {
	use(len(s))
	use(0) //@trace(string)
	usePtr(unsafe.Pointer(unsafe.StringData(s)))
}

// ifaces uses only the type of x after the marked line.
//
//go:noinline
func ifaces(x any, k int) {
	use(k)
	use(k) //@trace(iface)
	if _, ok := x.(string); ok {
		use(1)
	}
}

// kinds passes x on, an int and a string in turn: at the first two hits
// of its marked line x has a dynamic type the eBPF backend's direct
// decoder has not met, which Delve's evaluator reads.
//
//go:noinline
func kinds(x any) {
	describe(x) //@trace(kinds)
}

//go:noinline
func describe(x any) {
	if _, ok := x.(string); ok {
		sink++
	}
}

func main() {
	every := flag.Duration("every", 2*time.Millisecond, "pause between rounds of calls")
	flag.Parse()
	fmt.Printf("READY pid=%d\n", os.Getpid())
	for k := 1; ; k++ {
		pairs(k)
		callsInlined(k)
		xs := make([]int, 3)
		xs[0], xs[1], xs[2] = k, k+1, k+2
		slices(xs)
		strings("hello")
		ifaces(k+40, k)
		if k%2 == 0 {
			kinds(k)
		} else {
			kinds("k" + strconv.Itoa(k))
		}
		time.Sleep(*every)
	}
}
