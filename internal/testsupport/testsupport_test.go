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
