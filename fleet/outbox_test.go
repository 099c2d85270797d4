package fleet_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestOutboxCountsWhatItCannotKeep: a hit offered while the buffer is
// full is refused and counted, the rest are stored once each, and the
// hits still kept when the outbox stops are told lost: no hit goes
// missing without a count.
func TestOutboxCountsWhatItCannotKeep(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	var stored, lost, stopped atomic.Int64
	newOutbox := func(host string) *fleet.Outbox[int] {
		out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{
			Host: host, IDBase: host + "-1-", MaxHits: 100,
			Stored: func(int) { stored.Add(1) },
			Lost: func(_ int, err error) {
				lost.Add(1)
				if errors.Is(err, fleet.ErrOutboxStopped) {
					stopped.Add(1)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Offered before it runs: 100 fit, 900 do not.
	full := newOutbox("full")
	taken := 0
	for i := range 1000 {
		if full.Offer("tp", []byte(`{"n":1}`), i) {
			taken++
		}
	}
	if st := full.Stats(); taken != 100 || st.Offered != 1000 || st.Dropped != 900 {
		t.Fatalf("took %d of 1000 hits with room for 100; stats %+v, want 900 dropped", taken, st)
	}
	rctx, stop := context.WithCancel(ctx)
	go full.Run(rctx)
	if left := full.Flush(ctx); left != 0 {
		t.Fatalf("%d hits left unacknowledged", left)
	}
	stop()
	<-full.Done()
	if n, st := stored.Load(), full.Stats(); n != 100 || st.Stored != 100 || lost.Load() != 0 {
		t.Fatalf("%d hits told stored, %d lost; stats %+v: want the 100 kept stored", n, lost.Load(), st)
	}
	counts, err := c.StoredHits(ctx, "tp")
	if err != nil {
		t.Fatal(err)
	}
	if counts["full"] != 100 {
		t.Fatalf("the stream has %d hits of host full, want the 100 taken", counts["full"])
	}

	// Stopped with hits kept: each is told lost.
	stopping := newOutbox("stopping")
	for i := range 10 {
		stopping.Offer("tp", []byte(`{"n":1}`), i)
	}
	done, never := context.WithCancel(ctx)
	never()
	stopping.Run(done)
	if n, st := stopped.Load(), stopping.Stats(); n != 10 || st.Lost != 10 || stopping.Len() != 0 {
		t.Fatalf("stopped with 10 hits kept: %d told lost as stopped, stats %+v, %d still kept", n, st, stopping.Len())
	}
}
