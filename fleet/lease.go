package fleet

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Lease keeps tracepoints declared while their owner (a CLI run, a debug
// session) lives: each is declared with an expiry ttl ahead and re-declared
// before it passes. If the owner dies without removing them, agents drop them
// when the expiry passes. Agents ignore a change of expiry alone, so renewing
// never reinstalls a tracepoint.
type Lease struct {
	c   *Client
	ttl time.Duration

	// mu guards specs.
	mu    sync.Mutex
	specs map[string]Spec

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewLease starts renewing the tracepoints declared through it every ttl/3.
func (c *Client) NewLease(ttl time.Duration) *Lease {
	l := &Lease{c: c, ttl: ttl, specs: make(map[string]Spec), stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l
}

// Declare declares spec (or replaces the one with its id) under the lease.
func (l *Lease) Declare(ctx context.Context, spec *Spec) error {
	spec.Limits.ExpiresAt = time.Now().Add(l.ttl).UTC()
	if err := l.c.Declare(ctx, spec); err != nil {
		return err
	}
	l.mu.Lock()
	l.specs[spec.ID] = *spec
	l.mu.Unlock()
	return nil
}

// Remove removes the tracepoint id from the fleet and from the lease.
func (l *Lease) Remove(ctx context.Context, id string) error {
	l.mu.Lock()
	delete(l.specs, id)
	l.mu.Unlock()
	return l.c.Remove(ctx, id)
}

// IDs lists the tracepoints the lease holds.
func (l *Lease) IDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.specs))
	for id := range l.specs {
		ids = append(ids, id)
	}
	return ids
}

// Close stops renewing and removes every tracepoint of the lease.
func (l *Lease) Close(ctx context.Context) error {
	l.halt()
	var errs []error
	for _, id := range l.IDs() {
		errs = append(errs, l.Remove(ctx, id))
	}
	return errors.Join(errs...)
}

// Abandon stops renewing and leaves the tracepoints declared until their
// expiry.
func (l *Lease) Abandon() { l.halt() }

func (l *Lease) halt() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		specs := make([]Spec, 0, len(l.specs))
		for _, s := range l.specs {
			specs = append(specs, s)
		}
		l.mu.Unlock()
		for _, s := range specs {
			ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
			// A failed renewal is retried at the next tick; the expiry
			// leaves room for two misses.
			l.Declare(ctx, &s)
			cancel()
		}
	}
}
