// Command values is the eBPF backend's differential target: work has a local
// of every kind a hit shows, with values that depend only on n, so that two
// processes traced by two backends can be compared hit by hit.
//
// It prints "READY pid=<pid>" and then calls work every -every. On SIGUSR1
// it also runs a burst: -par goroutines call work -burst times each at
// once, then it prints "BURST calls=<n>".
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

var sink int

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
	if even && ratio >= 0 && err != nil && anyv != nil && lab.Label() != "" {
		total++
	}
	return total
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
	flag.Parse()

	shapes := []*Shape{
		{Name: "square", Origin: Point{1, 2}, Tags: []string{"red", "big"}, Scale: 1.5, Next: &Shape{Name: "dot", Scale: 0.25}},
		{Name: "circle", Origin: Point{-3, 4}, Scale: 2},
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			var wg sync.WaitGroup
			for g := 0; g < *par; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := goid()
					for i := 0; i < *burst; i++ {
						sink += work(i, shapes[i%2], id)
					}
				}()
			}
			wg.Wait()
			fmt.Printf("BURST calls=%d\n", *par**burst)
		}
	}()
	fmt.Printf("READY pid=%d\n", os.Getpid())
	id := goid()
	for n := 0; ; n++ {
		sink += work(n, shapes[n%2], id)
		time.Sleep(*every)
	}
}
