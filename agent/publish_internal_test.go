package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestPublisherOverload drives the publisher past what the stream takes:
// the server queues at most 16 messages per stream and refuses the rest
// with "too many requests", as a cluster does once 100k wait. Every hit
// must be stored once, and the publisher must back off rather than send
// its whole window again on each refusal: the server may see at most 1.5
// copies per hit (a batch counts its hits). Sending every unacknowledged
// hit again after a failure made it see several times more.
func TestPublisherOverload(t *testing.T) {
	s := fleettest.RunServerWith(t, func(o *server.Options) { o.StreamMaxBufferedMsgs = 16 })
	c := fleettest.Connect(t, s)
	// Every publish on a hit subject reaches this core subscriber, those
	// the stream refuses too; it counts the hits they carry.
	nc, _ := fleettest.Raw(t, s)
	var published, copies atomic.Int64
	sub, err := nc.Subscribe(c.Subjects().TraceAll(), func(m *nats.Msg) {
		published.Add(1)
		n, err := strconv.Atoi(m.Header.Get(fleet.HitsHeader))
		if err != nil {
			n = 1
		}
		copies.Add(int64(n))
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const hits = 5000
	p, err := newPublisher(c, "busy", "busy-1-", hits, 64<<20, slog.New(slog.DiscardHandler), newMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	p.refused = func(placeKey, uint64) { lost.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	go p.run(ctx)
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	h := fleet.Hit{Tracepoint: "tp", Message: strings.Repeat("x", 1000)}
	for range hits {
		if !p.offer(placeKey{pid: 1, id: "tp"}, &h, false) {
			t.Fatal("the buffer refused a hit although it holds them all")
		}
	}
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer fcancel()
	if left := p.flush(fctx); left != 0 {
		t.Fatalf("%d hits still unacknowledged after 2 minutes; %d publishes seen", left, published.Load())
	}
	if n := lost.Load(); n != 0 {
		t.Fatalf("%d hits lost", n)
	}
	stored, err := c.StoredHits(ctx, "tp")
	if err != nil {
		t.Fatal(err)
	}
	if stored["busy"] != hits {
		t.Fatalf("the stream has %d hits of the %d sent: each must be stored once", stored["busy"], hits)
	}
	// The subscriber has seen every publish once it has seen as many
	// hits as the stream stored.
	testsupport.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if n := copies.Load(); n < hits {
			return fmt.Errorf("the subscriber saw %d publishes carrying %d of %d hits", published.Load(), n, hits)
		}
		return nil
	})
	if ratio := float64(copies.Load()) / hits; ratio > 1.5 {
		t.Fatalf("the server saw %d copies of %d hits (%.1f each) in %d publishes: the publisher sent again what it should have waited for", copies.Load(), hits, ratio, published.Load())
	} else {
		t.Logf("%d copies of %d hits (%.2f each) in %d publishes", copies.Load(), hits, ratio, published.Load())
	}
}
