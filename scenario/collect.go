package scenario

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// collector reads the run's hits from the stream until closed. Its one
// goroutine reads; waiters are woken through changed.
type collector struct {
	reader *fleet.HitReader
	names  map[string]string // fleet id → tracepoint name
	stop   context.CancelFunc
	done   chan struct{}

	// mu guards the fields below.
	mu      sync.Mutex
	hits    []fleet.Hit
	counts  map[string]int // by tracepoint name
	last    time.Time      // arrival of the last hit
	readErr error
	changed chan struct{} // closed and replaced on every hit
}

func newCollector(reader *fleet.HitReader, names map[string]string) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{reader: reader, names: names, stop: cancel, done: make(chan struct{}),
		counts: map[string]int{}, last: time.Now(), changed: make(chan struct{})}
	go c.read(ctx)
	return c
}

func (c *collector) read(ctx context.Context) {
	defer close(c.done)
	for {
		h, err := c.reader.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				var fe *fleet.Error
				if errors.As(err, &fe) {
					continue // one malformed message; the reader goes on
				}
				c.mu.Lock()
				c.readErr = err
				c.mu.Unlock()
			}
			return
		}
		// Hits carry the fleet id; expectations name tracepoints.
		h.Tracepoint = c.names[h.Tracepoint]
		c.mu.Lock()
		c.hits = append(c.hits, h)
		c.counts[h.Tracepoint]++
		c.last = time.Now()
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *collector) close() {
	c.stop()
	c.reader.Close()
	<-c.done
}

// snapshot is the hits so far, in Order.
func (c *collector) snapshot() []fleet.Hit {
	c.mu.Lock()
	hits := append([]fleet.Hit(nil), c.hits...)
	c.mu.Unlock()
	Order(hits)
	return hits
}

func (c *collector) lastArrival() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *collector) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// waitCount waits until tracepoint name has at least n hits; it returns
// the count when ctx ends first.
func (c *collector) waitCount(ctx context.Context, name string, n int) (int, error) {
	for {
		c.mu.Lock()
		got, ch := c.counts[name], c.changed
		c.mu.Unlock()
		if got >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-ch:
		}
	}
}

// Order sorts hits into the order they ran, as far as the run can tell:
// by capture time on their agents, then by stream sequence. Capture times
// of different hosts are only as comparable as the hosts' clocks; the
// fleet's execution-ordered timeline (clock offsets, coordinated time) is
// the better order once it lands, and this is the one place to switch.
func Order(hits []fleet.Hit) {
	sort.SliceStable(hits, func(i, j int) bool {
		a, b := &hits[i], &hits[j]
		if a.Time != b.Time {
			return a.Time < b.Time
		}
		return a.Seq < b.Seq
	})
}
