package lsp

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.lsp.dev/protocol"
)

type countingClient struct {
	protocol.UnimplementedClient
	lens, hints atomic.Int64
	hint        chan struct{}
}

func (c *countingClient) CodeLensRefresh(context.Context) error {
	c.lens.Add(1)
	return nil
}

func (c *countingClient) InlayHintRefresh(context.Context) error {
	c.hints.Add(1)
	c.hint <- struct{}{}
	return nil
}

// TestRefreshThrottledAndOnlyIfSupported: a client that declared inlay hint
// refresh but not code lens refresh gets only the former, and a burst of
// changes yields at most one refresh per RefreshEvery.
func TestRefreshThrottledAndOnlyIfSupported(t *testing.T) {
	s := newServer(Options{RefreshEvery: 50 * time.Millisecond})
	fc := &countingClient{hint: make(chan struct{}, 1000)}
	s.client = fc
	s.refreshHints = true
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.refresher()
	}()
	defer func() {
		close(s.done)
		<-done
	}()

	s.notify()
	select {
	case <-fc.hint:
	case <-time.After(10 * time.Second):
		t.Fatal("no workspace/inlayHint/refresh within 10s of a change")
	}
	// The lens decision of that round came before the hint refresh.
	if n := fc.lens.Load(); n != 0 {
		t.Fatalf("%d workspace/codeLens/refresh sent to a client that did not declare refreshSupport", n)
	}

	start := time.Now()
	for time.Since(start) < 500*time.Millisecond {
		s.notify()
		time.Sleep(time.Millisecond) // a change every millisecond: the load, not an assertion
	}
	elapsed := time.Since(start)
	max := int64(elapsed/s.opts.RefreshEvery) + 2
	if n := fc.hints.Load() - 1; n > max || n < 2 {
		t.Errorf("%d refreshes for a change every ms over %v, want between 2 and %d (one per %v)", n, elapsed, max, s.opts.RefreshEvery)
	}
}
