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
