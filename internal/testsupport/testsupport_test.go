package testsupport

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	var calls atomic.Int32
	err := Wait(10*time.Second, time.Millisecond, func() error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls.Load() != 3 {
		t.Errorf("Wait = %v after %d calls, want nil after 3", err, calls.Load())
	}
	err = Wait(20*time.Millisecond, time.Millisecond, func() error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "never") {
		t.Errorf("Wait on a condition never met = %v, want its last error", err)
	}
}

// parked is a goroutine NoGoroutines can find by its function's name (not
// inlined into the go statement's wrapper).
//
//go:noinline
func parked(started chan<- struct{}, release <-chan struct{}, done chan<- struct{}) {
	close(started)
	<-release
	close(done)
}

func TestNoGoroutines(t *testing.T) {
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go parked(started, release, done)
	<-started
	err := NoGoroutines(50*time.Millisecond, "parked goroutines", "testsupport.parked")
	if err == nil || !strings.Contains(err.Error(), "1 parked goroutines still running") || !strings.Contains(err.Error(), "testsupport.parked") {
		t.Errorf("NoGoroutines with one running = %v, want it named with its stack", err)
	}
	close(release)
	<-done
	if err := NoGoroutines(10*time.Second, "parked goroutines", "testsupport.parked"); err != nil {
		t.Errorf("NoGoroutines after it ended: %v", err)
	}
}

// TestUpstreamLeak: nats.go's own stuck goroutine, as a stressed CI run
// listed it, is not counted; the same function waiting on a live channel
// (a publisher in use) is.
func TestUpstreamLeak(t *testing.T) {
	stuck := `goroutine 706 [chan receive (nil chan), 1 minutes]:
github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect(0x2c4bcaf9ee10)
	/root/go/pkg/mod/github.com/nats-io/nats.go@v1.55.0/jetstream/publish.go:570 +0x72
created by github.com/nats-io/nats.go/jetstream.(*jetStream).newAsyncReply in goroutine 704`
	if !upstreamLeak(stuck) {
		t.Errorf("nats.go's goroutine on a nil channel counted as a leak")
	}
	if live := strings.Replace(stuck, "(nil chan), 1 minutes", "", 1); upstreamLeak(live) {
		t.Errorf("a publisher's goroutine on its live channel not counted")
	}
}
