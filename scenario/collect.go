package scenario

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario/recording"
)

// collector reads the run's hits from the stream until closed. Its one
// goroutine reads; waiters are woken through changed.
type collector struct {
	reader *fleet.HitReader
	names  map[string]string // fleet id → tracepoint name
	stop   context.CancelFunc
	done   chan struct{}

	// mu guards the fields below.
	mu sync.Mutex
	// msgs are the hits and watermarks in stream order, for the timeline.
	msgs   []recording.Message
	counts map[string]int // by tracepoint name
	// marks is, per host, the latest watermark in coordinated time: every
	// hit its agent captured before it is in.
	marks map[string]int64
	last  time.Time // arrival of the last hit
	// hosts are those the run's tracepoints were installed on.
	hosts   []string
	readErr error
	readAt  time.Time     // when reading stopped on readErr
	changed chan struct{} // closed and replaced on every hit
}

func newCollector(reader *fleet.HitReader, names map[string]string) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{reader: reader, names: names, stop: cancel, done: make(chan struct{}),
		counts: map[string]int{}, marks: map[string]int64{}, last: time.Now(), changed: make(chan struct{})}
	go c.read(ctx)
	return c
}

func (c *collector) read(ctx context.Context) {
	defer close(c.done)
	for {
		h, wm, err := c.reader.NextMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				var fe *fleet.Error
				if errors.As(err, &fe) {
					continue // one malformed message; the reader goes on
				}
				c.mu.Lock()
				c.readErr, c.readAt = err, time.Now()
				c.mu.Unlock()
			}
			return
		}
		if wm != nil {
			mark := wm.Time
			if wm.Clock != nil {
				mark += wm.Clock.Offset
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, recording.Message{Watermark: wm})
			c.marks[wm.Host] = max(c.marks[wm.Host], mark)
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			continue
		}
		// Hits carry the fleet id; expectations name tracepoints.
		h.Tracepoint = c.names[h.Tracepoint]
		c.mu.Lock()
		c.msgs = append(c.msgs, recording.Message{Hit: &h})
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
func (c *collector) snapshot() []fleet.Placed {
	c.mu.Lock()
	msgs := append([]recording.Message(nil), c.msgs...)
	c.mu.Unlock()
	return recording.Order(msgs, fleet.TimelineOptions{})
}

func (c *collector) lastArrival() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// behind lists the hosts whose agents have not yet promised every hit
// captured before end (a watermark at or past it). A host that has sent no
// watermark yet is behind too: an agent sends one for each tracepoint it
// placed within a second, and a loaded one may not have spoken when the
// steps end while its hits are still on their way (a stressed run judged
// the checkout without a hit that came later). changed is closed on the
// next message.
func (c *collector) behind(hosts []string, end int64) (late []string, changed <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hosts {
		if mark, ok := c.marks[h]; !ok || mark < end {
			late = append(late, h)
		}
	}
	return late, c.changed
}

// total is the number of hits so far.
func (c *collector) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.counts {
		n += k
	}
	return n
}

// watchHosts sets the hosts whose agents the run depends on.
func (c *collector) watchHosts(hosts []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hosts = hosts
}

// depends is the hosts the run depends on, and why and when reading
// stopped, if it did.
func (c *collector) depends() (hosts []string, at time.Time, stopped error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hosts, c.readAt, c.readErr
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

// Order puts hits, read from the stream in its order, in the order they
// ran: the fleet's timeline (recording.Order), with each hit's coordinated
// time and clock bound.
func Order(hits []fleet.Hit) []fleet.Placed {
	msgs := make([]recording.Message, len(hits))
	for i := range hits {
		msgs[i].Hit = &hits[i]
	}
	return recording.Order(msgs, fleet.TimelineOptions{})
}
