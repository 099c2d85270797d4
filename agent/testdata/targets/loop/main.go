// Command loop is a target for the agent's tests: it calls process forever with
// varied values so that tracepoints at its marked lines hit often and have
// every kind of local to capture.
//
// It prints "READY pid=<pid>" once running, "ALIVE n=<iterations>
// failures=<k>" every second (so a test can see it still runs after a detach)
// and "EXIT n=<iterations>" when it stops on -exit-after, SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// Owner is reached through a pointer from Item.
type Owner struct {
	Name  string
	Email string
	Token string // a secret: agents redact it
}

// Item is the argument tracepoints look into: strings, numbers, a slice, a
// pointer (nil for some items) and a map.
type Item struct {
	ID    string
	Count int
	Price float64
	Tags  []string
	Owner *Owner
	Meta  map[string]int
}

// iterations counts completed calls to process, failures those that failed.
var iterations, failures atomic.Int64

// process does a little arithmetic and string work so that every kind of local
// is live at the marked line; it is never inlined so its arguments stay
// arguments in optimized builds.
//
//go:noinline
func process(it *Item, n int) (int, error) {
	units := it.Count * (n%7 + 1)
	cost := float64(units) * it.Price
	label := it.ID + "#" + strconv.Itoa(n)
	rush := cost > 50 || n%3 == 0
	parts := append(make([]string, 0, len(it.Tags)+1), it.Tags...)
	var note any = units
	if rush {
		parts = append(parts, "rush")
		note = label
	}
	var err error
	if n%5 == 0 {
		err = fmt.Errorf("processing %s: %d units at %.2f over budget", label, units, cost)
	}
	// nothing here @trace(nocode)
	it.Meta["calls"]++ //@trace(process)
	score := units + len(parts) + len(label)
	if rush {
		score += int(cost) % 10
	}
	if s, ok := note.(string); ok {
		score += len(s)
	}
	return score, err
}

func main() {
	exitAfter := flag.Duration("exit-after", 0, "exit with status 0 after this long (0: never)")
	every := flag.Duration("every", 5*time.Millisecond, "pause between calls to process")
	flag.Parse()

	fmt.Printf("READY pid=%d\n", os.Getpid())
	if *exitAfter > 0 {
		time.AfterFunc(*exitAfter, exit)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		exit()
	}()
	go func() {
		for range time.Tick(time.Second) {
			fmt.Printf("ALIVE n=%d failures=%d\n", iterations.Load(), failures.Load())
		}
	}()

	alice := &Owner{Name: "alice", Email: "alice@example.com", Token: "tok-alice-secret"}
	items := []*Item{
		{ID: "book", Count: 2, Price: 12.5, Tags: []string{"paper"}, Owner: alice, Meta: map[string]int{"shelf": 3}},
		{ID: "lamp", Count: 1, Price: 49.9, Tags: []string{"light", "desk"}, Meta: map[string]int{}},
		{ID: "pen", Count: 10, Price: 1.75, Owner: &Owner{Name: "bob", Email: "bob@example.com"}, Meta: map[string]int{"box": 1}},
	}
	for n := 0; ; n++ {
		it := items[n%len(items)] //@trace(loop)
		_, err := process(it, n)
		if err != nil {
			failures.Add(1)
		}
		iterations.Store(int64(n + 1))
		if *every > 0 {
			time.Sleep(*every)
		}
	}
}

func exit() {
	fmt.Printf("EXIT n=%d\n", iterations.Load())
	os.Exit(0)
}
