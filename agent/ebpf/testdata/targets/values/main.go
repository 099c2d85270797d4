// Command values is the eBPF backend's differential target: work has a local
// of every kind a hit shows, with values that depend only on n, so that two
// processes traced by two backends can be compared hit by hit.
//
// It prints "READY pid=<pid>" and then calls work every -every (never with
// -every 0). On SIGUSR1 it also runs a burst: -par goroutines call work
// -burst times each at once, with n = 1000000*k + i in burst k (from 1),
// then it prints "BURST k=<k> calls=<n>", and with -exit-after-burst exits
// at once. On SIGUSR2 it calls work once with n = -1 and prints
// "CALLED n=-1".
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type Point struct {
	X, Y int
}

// Shape has a string, a nested struct, a slice, a float and a pointer.
type Shape struct {
	Name   string
	Origin Point
	Tags   []string
	Scale  float64
	Next   *Shape
}

func (s *Shape) Label() string { return s.Name }

type Labeler interface{ Label() string }

var errBoom = errors.New("boom")

var sink atomic.Int64

// work is never inlined, so its arguments stay arguments in optimized
// builds; gid is the calling goroutine's id, for the hits' goroutine ids to
// be checked against.
//
//go:noinline
func work(n int, s *Shape, gid int64) int {
	count := n * 3
	ratio := float64(n) / 4
	even := n%2 == 0
	name := "item-" + strconv.Itoa(n%3)
	pt := Point{X: n, Y: -n}
	arr := [3]int{n, n + 1, n + 2}
	nums := []int{n, 2 * n, 3 * n}
	var err error = errBoom
	var anyv any = s
	var lab Labeler = s
	m := map[string]int{"n": n}
	total := count + len(name) + pt.X + arr[2] + nums[1] + len(m) + int(gid) //@trace(work)
	total += twice(n)
	//@trace(nocode): a comment, which has no code
	// Everything stays live across the traced line, so that an optimized
	// build keeps every value where its DWARF says.
	return total + keep(count, ratio, even, name, pt, arr, nums, err, anyv, lab, m)
}

// twice is small enough to be inlined into work in optimized builds: its
// marked line then has its PC inside work.
func twice(x int) int {
	y := x * 2
	return y + len(strconv.Itoa(y)) //@trace(inl)
}

//go:noinline
func keep(count int, ratio float64, even bool, name string, pt Point, arr [3]int, nums []int, err error, anyv any, lab Labeler, m map[string]int) int {
	if even && ratio >= 0 && err != nil && anyv != nil && lab.Label() != "" {
		return count + len(name) + pt.Y + arr[0] + len(nums) + len(m)
	}
	return 0
}

// goid reads the calling goroutine's id from its stack header.
func goid() int64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseInt(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

func main() {
	every := flag.Duration("every", 20*time.Millisecond, "pause between calls to work")
	burst := flag.Int("burst", 200, "calls per goroutine in a burst")
	par := flag.Int("par", 8, "goroutines in a burst")
	exitAfterBurst := flag.Bool("exit-after-burst", false, "exit as soon as the first burst ends")
	flag.Parse()

	shapes := []*Shape{
		{Name: "square", Origin: Point{1, 2}, Tags: []string{"red", "big"}, Scale: 1.5, Next: &Shape{Name: "dot", Scale: 0.25}},
		{Name: "circle", Origin: Point{-3, 4}, Scale: 2},
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for k := 1; ; k++ {
			<-usr1
			var wg sync.WaitGroup
			for g := 0; g < *par; g++ {
				wg.Add(1)
				go func() { //@trace(twopcs): a go statement, with code in two functions
					defer wg.Done()
					id := goid()
					for i := 0; i < *burst; i++ {
						sink.Add(int64(work(1000000*k+i, shapes[i%2], id)))
					}
				}()
			}
			wg.Wait()
			fmt.Printf("BURST k=%d calls=%d\n", k, *par**burst)
			if *exitAfterBurst {
				os.Exit(0)
			}
		}
	}()
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	go func() {
		for range usr2 {
			sink.Add(int64(work(-1, shapes[0], goid())))
			fmt.Println("CALLED n=-1")
		}
	}()
	fmt.Printf("READY pid=%d\n", os.Getpid())
	if *every == 0 {
		select {}
	}
	id := goid()
	for n := 0; ; n++ {
		sink.Add(int64(work(n, shapes[n%2], id)))
		time.Sleep(*every)
	}
}
