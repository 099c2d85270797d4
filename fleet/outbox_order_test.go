package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestOutboxResendsInOrder: a stream that loses the first copy of every
// message (each ack times out, at its own backoff) stores the copies sent
// again in the order offered, the watermark among them after the hits
// before it. Resent by backoff order, the watermark landed first in 7 of
// 8 runs.
func TestOutboxResendsInOrder(t *testing.T) {
	order := throughLossyStream(t, func(string) bool { return true }, func(out *fleet.Outbox[int]) {
		for i := 1; i <= 6; i++ {
			out.Offer("tp", []byte(fmt.Sprintf("hit%d", i)), i)
		}
		out.OfferMarks([]string{"tp"}, []byte("MARK"))
		out.Offer("tp", []byte("hit7"), 7)
	})
	for i := 1; i < len(order); i++ {
		var a, b int
		fmt.Sscanf(order[i-1], "h-%d", &a)
		fmt.Sscanf(order[i], "h-%d", &b)
		if b < a {
			t.Errorf("out of order: %s stored before %s", order[i-1], order[i])
		}
	}
}

// TestOutboxMarkAfterFailedHit: a watermark offered behind hits still in
// flight waits for them: when the first hit's copy is lost and sent again,
// the watermark is stored after it, not before (it was, in 5 of 5 runs).
// The hits, offered together, go in one batch or two (h-1+2, or h-1 and
// h-2), whose first copy is lost.
func TestOutboxMarkAfterFailedHit(t *testing.T) {
	order := throughLossyStream(t, func(id string) bool { return strings.HasPrefix(id, "h-1") }, func(out *fleet.Outbox[int]) {
		out.Offer("tp", []byte("hit1"), 1)
		out.Offer("tp", []byte("hit2"), 2)
		out.OfferMarks([]string{"tp"}, []byte("MARK"))
	})
	// Hits may overtake one another (the timeline orders them by when
	// they ran); a watermark must not overtake a hit it covers.
	stored := strings.Join(order, " ")
	if n := len(order); n == 0 || order[n-1] != "h-3:MARK" || !strings.Contains(stored, "hit1") || !strings.Contains(stored, "hit2") {
		t.Errorf("stored %v; want both hits, then the watermark", order)
	}
}

// throughLossyStream runs an Outbox of host h, offered what offer offers,
// against a stream that loses the first copy of each message lose names
// (its ack never comes), until every message is stored, and returns the
// stored messages in order as "id:data". The stream is a subscriber on
// the hits' subjects of a real nats-server, answering acks as JetStream
// does, in place of the hit stream.
func throughLossyStream(t *testing.T, lose func(id string) bool, offer func(*fleet.Outbox[int])) []string {
	t.Helper()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	nc, js := fleettest.Raw(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := js.DeleteStream(ctx, c.Subjects().HitStream()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards seen, order and got
	seen := map[string]bool{}
	var order []string
	var got int64 // messages received, lost or stored
	if _, err := nc.Subscribe(c.Subjects().Prefix+".h.>", func(m *nats.Msg) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if id == "" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		got++
		if !seen[id] && lose(id) {
			seen[id] = true
			return // first copy lost
		}
		order = append(order, id+":"+string(m.Data))
		b, _ := json.Marshal(map[string]any{"stream": "X", "seq": len(order)})
		m.Respond(b)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h", IDBase: "h-", AckTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	offer(out)
	rctx, stop := context.WithCancel(ctx)
	go out.Run(rctx)
	if left := out.Flush(ctx); left != 0 {
		t.Fatalf("%d messages never stored", left)
	}
	// Watermarks go unacknowledged: Flush does not wait for them to
	// arrive.
	for {
		mu.Lock()
		arrived := got
		mu.Unlock()
		if arrived >= out.Stats().Sent {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d messages sent arrived", arrived, out.Stats().Sent)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	<-out.Done()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("stored order: %v", order)
	return order
}
