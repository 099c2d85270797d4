// Command corpus is a target of the eBPF backend's differential corpus: its
// run function goes through contexts, interfaces, maps, closures, generics,
// errors, channels and nested pointers, with values that depend only on the
// run's number, so that two processes traced by two backends show the same
// values line by line.
//
// It prints "READY pid=<pid>", then on each SIGUSR1 calls run once (k from
// 1) and prints "RUN k=<k>". Nothing else runs: every hit comes from a run.
package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

type ctxKey string

// Account has a bit of everything a hit shows.
type Account struct {
	ID      int64
	Owner   string
	Tags    map[string]int
	Limits  [3]float64
	Parent  *Account
	Notes   []string
	Handler func(int) int
}

// Store is an interface with two implementations, one a pointer, one a value.
type Store interface {
	Get(id int64) (*Account, error)
}

type memStore struct {
	byID map[int64]*Account
	hits int
}

func (m *memStore) Get(id int64) (*Account, error) {
	m.hits++
	a, ok := m.byID[id]
	if !ok {
		return nil, &NotFound{ID: id, Where: "memory"}
	}
	return a, nil
}

type nullStore struct{ reason string }

func (n nullStore) Get(id int64) (*Account, error) {
	return nil, fmt.Errorf("null store (%s): %w", n.reason, errEmpty)
}

// NotFound is an error type with fields.
type NotFound struct {
	ID    int64
	Where string
}

func (e *NotFound) Error() string { return fmt.Sprintf("account %d not found in %s", e.ID, e.Where) }

var errEmpty = errors.New("empty")

// Pair and Stack are generic.
type Pair[K comparable, V any] struct {
	Key K
	Val V
}

type Stack[T any] struct {
	items []T
}

func (s *Stack[T]) Push(v T) {
	s.items = append(s.items, v) //@trace(push)
}

func (s *Stack[T]) Pop() (T, bool) {
	var zero T
	if len(s.items) == 0 {
		return zero, false
	}
	v := s.items[len(s.items)-1]
	s.items = s.items[:len(s.items)-1]
	return v, true
}

//go:noinline
func sortedPairs[K ~string, V any](m map[K]V) []Pair[K, V] {
	out := make([]Pair[K, V], 0, len(m))
	// The keys in order, not in the map's own order, which is chosen at
	// random on each range: every line here then holds the same values
	// in every run, as the corpus needs to compare two runs.
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, Pair[K, V]{k, m[k]})
	}
	return out //@trace(pairs)
}

//go:noinline
func lookup(ctx context.Context, s Store, id int64) (string, error) {
	user, _ := ctx.Value(ctxKey("user")).(string)
	a, err := s.Get(id)
	if err != nil {
		var nf *NotFound
		if errors.As(err, &nf) {
			return "", fmt.Errorf("lookup by %s: %w", user, err) //@trace(notfound)
		}
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	name := a.Owner
	if a.Parent != nil {
		name += "<" + a.Parent.Owner
	}
	return name, nil //@trace(lookup)
}

//go:noinline
func apply(accs []*Account, f func(*Account) int) (total int) {
	for i, a := range accs {
		n := f(a)
		total += n * (i + 1) //@trace(apply)
	}
	return total
}

//go:noinline
func fanIn(k int) []int {
	ch := make(chan int)
	go func() {
		for i := 0; i < 3; i++ {
			ch <- k*10 + i //@trace(send)
		}
		close(ch)
	}()
	// Only this goroutine touches got: its value at any hit is the
	// same in every execution.
	var got []int
	for v := range ch {
		got = append(got, v) //@trace(recv)
	}
	return got
}

// run is one deterministic pass through everything above.
//
//go:noinline
func run(k int) string {
	root := &Account{ID: 1, Owner: "root", Tags: map[string]int{"admin": 1}, Limits: [3]float64{1, 2.5, 100}}
	alice := &Account{ID: 2, Owner: "alice", Tags: map[string]int{"dev": k, "ops": 2 * k}, Parent: root,
		Notes: []string{"first", strings.Repeat("x", k)}, Handler: func(n int) int { return n + k }}
	store := &memStore{byID: map[int64]*Account{1: root, 2: alice}}
	var stores = []Store{store, nullStore{reason: "test"}}

	ctx := context.WithValue(context.Background(), ctxKey("user"), "alice")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cctx, cancelCause := context.WithCancelCause(ctx)

	var results []string
	for i, s := range stores {
		for _, id := range []int64{2, 3} {
			name, err := lookup(cctx, s, id)
			results = append(results, fmt.Sprintf("%d/%d:%s:%v", i, id, name, err)) //@trace(result)
		}
	}
	cancelCause(errEmpty)
	_, cerr := lookup(cctx, store, 1)
	cause := context.Cause(cctx)

	scale := 3
	total := apply([]*Account{root, alice}, func(a *Account) int {
		return len(a.Owner)*scale + a.Handler2() //@trace(closure)
	})

	var st Stack[Pair[string, int]]
	for _, p := range sortedPairs(alice.Tags) {
		st.Push(p)
	}
	top, ok := st.Pop()
	var ints Stack[int]
	ints.Push(k)
	got := fanIn(k)
	var anyv any = top
	var errv error = &NotFound{ID: int64(k), Where: "run"}
	summary := fmt.Sprintf("k=%d total=%d top=%v ok=%v got=%v cerr=%v cause=%v any=%v err=%v n=%d",
		k, total, top, ok, got, cerr, cause, anyv, errv, len(results)) //@trace(summary)
	return summary
}

// Handler2 calls the account's handler, if any.
func (a *Account) Handler2() int {
	if a.Handler == nil {
		return 0
	}
	return a.Handler(int(a.ID)) //@trace(method)
}

func main() {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	fmt.Printf("READY pid=%d\n", os.Getpid())
	for k := 1; ; k++ {
		<-usr1
		s := run(k)
		fmt.Printf("RUN k=%d %s\n", k, s)
	}
}
