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
// never reinstalls a tracepoint. A tracepoint declared with DeclareUntil
// also ends at the time its owner gave: its expiry never goes past it, and
// the lease removes it once it passed.
type Lease struct {
	c   *Client
	ttl time.Duration

	// op orders declarations, removals and renewals one after another,
	// each with its write to the bucket: a renewal in flight never puts
	// back a tracepoint just removed, or an older version of one just
	// declared again.
	op sync.Mutex
	// mu guards specs.
	mu    sync.Mutex
	specs map[string]leased

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// leased is a tracepoint of a lease, and when its owner wants it to end
// (zero: when the lease does).
type leased struct {
	spec  Spec
	until time.Time
}

// NewLease starts renewing the tracepoints declared through it every ttl/3.
func (c *Client) NewLease(ttl time.Duration) *Lease {
	l := &Lease{c: c, ttl: ttl, specs: make(map[string]leased), stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l
}

// Declare declares spec (or replaces the one with its id) under the lease,
// for as long as the lease lives.
func (l *Lease) Declare(ctx context.Context, spec *Spec) error {
	return l.DeclareUntil(ctx, spec, time.Time{})
}

// DeclareUntil is Declare for a tracepoint that ends at until, or sooner
// if the lease does; a zero until is Declare's. Its limits.expiresAt is
// until once until is less than the lease's ttl away.
func (l *Lease) DeclareUntil(ctx context.Context, spec *Spec, until time.Time) error {
	l.op.Lock()
	defer l.op.Unlock()
	return l.declare(ctx, spec, until)
}

// declare is DeclareUntil with op held.
func (l *Lease) declare(ctx context.Context, spec *Spec, until time.Time) error {
	exp := time.Now().Add(l.ttl)
	if !until.IsZero() && until.Before(exp) {
		exp = until
	}
	spec.Limits.ExpiresAt = exp.UTC()
	if err := l.c.Declare(ctx, spec); err != nil {
		return err
	}
	l.mu.Lock()
	l.specs[spec.ID] = leased{*spec, until}
	l.mu.Unlock()
	return nil
}

// Until returns when tracepoint id of the lease ends by its owner's will
// (DeclareUntil), and whether the lease holds it. Zero means when the
// lease does.
func (l *Lease) Until(id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.specs[id]
	return ls.until, ok
}

// Remove removes the tracepoint id from the fleet and from the lease.
func (l *Lease) Remove(ctx context.Context, id string) error {
	l.op.Lock()
	defer l.op.Unlock()
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
		specs := make([]leased, 0, len(l.specs))
		for _, s := range l.specs {
			specs = append(specs, s)
		}
		l.mu.Unlock()
		now := time.Now()
		for _, s := range specs {
			l.renewOne(s.spec.ID, now)
		}
	}
}

// renewOne renews tracepoint id, or removes it if its end passed, unless
// it left the lease since the renewal began: what it holds now is renewed.
func (l *Lease) renewOne(id string, now time.Time) {
	l.op.Lock()
	defer l.op.Unlock()
	l.mu.Lock()
	s, ok := l.specs[id]
	l.mu.Unlock()
	if !ok {
		return // removed meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
	defer cancel()
	if !s.until.IsZero() && !now.Before(s.until) {
		// Its end passed: agents dropped it at its expiry, and the
		// fleet's list should not show it any longer. A failed removal is
		// retried at the next tick.
		if err := l.c.Remove(ctx, id); err == nil {
			l.mu.Lock()
			delete(l.specs, id)
			l.mu.Unlock()
		}
		return
	}
	// A failed renewal is retried at the next tick; the expiry leaves
	// room for two misses.
	l.declare(ctx, &s.spec, s.until)
}
