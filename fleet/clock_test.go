package fleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// TestServerAnswersClock asks the embedded server's clock over NATS, as an
// agent does, with a clock of its own 40 ms behind.
func TestServerAnswersClock(t *testing.T) {
	ctx := context.Background()
	s, err := fleet.StartServer(ctx, fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	c, err := fleet.Connect(ctx, s.ClientURL(), fleet.ClientOptions{Name: "clock test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	skew := -40 * time.Millisecond
	now := func() time.Time { return time.Now().Add(skew) }
	var clock fleet.Clock
	for range 5 {
		t0, ts, t3, err := c.AskClock(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		clock.Add(t0, ts, t3)
	}
	r, ok := clock.Reading(now())
	if !ok {
		t.Fatal("no reading after five exchanges")
	}
	// The offset is what corrects the skew, within the bound.
	if d := time.Duration(r.Offset) + skew; d < -time.Duration(r.Bound) || d > time.Duration(r.Bound) {
		t.Errorf("offset %v ±%v, want %v", time.Duration(r.Offset), time.Duration(r.Bound), -skew)
	}
}

// TestClockReadingFollowsSamples: a reading keeps to the sample it chose
// for a moment (Clock reuses it), but a better sample added meanwhile, or
// the chosen one leaving the window, is seen at once.
func TestClockReadingFollowsSamples(t *testing.T) {
	t0 := time.Now()
	var c fleet.Clock
	// Offset 5 ms within 1 ms (an RTT of 2 ms).
	c.Add(t0, t0.Add(6*time.Millisecond), t0.Add(2*time.Millisecond))
	now := t0.Add(3 * time.Millisecond)
	r, ok := c.Reading(now)
	if !ok || r.Offset != int64(5*time.Millisecond) {
		t.Fatalf("first reading %+v, %v; want offset 5ms", r, ok)
	}
	if r2, _ := c.Reading(now.Add(100 * time.Microsecond)); r2 != r {
		t.Errorf("100µs later: %+v, want %+v (the bound grows by the drift only per ms)", r2, r)
	}
	// Offset 7 ms within 50 µs: better, and chosen at once.
	at := now.Add(200 * time.Microsecond)
	c.Add(at, at.Add(7*time.Millisecond+50*time.Microsecond), at.Add(100*time.Microsecond))
	if r, _ := c.Reading(at.Add(300 * time.Microsecond)); r.Offset != int64(7*time.Millisecond) || r.Bound > int64(100*time.Microsecond) {
		t.Errorf("after a better sample: %+v, want offset 7ms within 100µs", r)
	}
	// Past the window no sample is left.
	if r, ok := c.Reading(at.Add(3 * time.Minute)); ok {
		t.Errorf("3 minutes on: %+v, want no reading", r)
	}
}
