package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
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

// TestOutboxMarksBehindBacklog: behind hits not yet sent, a watermark
// replaces the one before it if that one is younger than a second, so
// that an overloaded stream stores hits rather than watermarks; the one
// kept is the newest, and stays behind every hit offered before it.
func TestOutboxMarksBehindBacklog(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	_, js := fleettest.Raw(t, s)
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h", IDBase: "h-1-"})
	if err != nil {
		t.Fatal(err)
	}
	// Offered before it runs: a backlog.
	out.Offer("tp", []byte(`{"n":1}`), 1)
	out.OfferMarks([]string{"tp"}, []byte(`{"mark":1}`))
	out.Offer("tp", []byte(`{"n":2}`), 2)
	out.OfferMarks([]string{"tp"}, []byte(`{"mark":2}`))
	if n := out.Len(); n != 3 {
		t.Fatalf("%d hits and watermarks kept, want 2 hits and the newer watermark", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go out.Run(ctx)
	if left := out.Flush(ctx); left != 0 {
		t.Fatalf("%d left unacknowledged", left)
	}
	st, err := js.Stream(ctx, c.Subjects().HitStream())
	if err != nil {
		t.Fatal(err)
	}
	// A watermark goes without an ack (see Outbox.send): Flush returns
	// once the hits are stored, and the watermark may still be on its way
	// into the stream.
	var info *jetstream.StreamInfo
	testsupport.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		info, err = st.Info(ctx, jetstream.WithSubjectFilter(c.Subjects().Watermark("h", "tp")))
		if err == nil && len(info.State.Subjects) == 0 {
			err = errors.New("no watermark stored yet")
		}
		return err
	})
	if n := len(info.State.Subjects); n != 1 || info.State.Subjects[c.Subjects().Watermark("h", "tp")] != 1 {
		t.Fatalf("watermarks stored: %v, want one", info.State.Subjects)
	}
	m, err := st.GetLastMsgForSubject(ctx, c.Subjects().Watermark("h", "tp"))
	if err != nil {
		t.Fatal(err)
	}
	// Both hits, sent as one batch, come first.
	if string(m.Data) != `{"mark":2}` || m.Sequence != info.State.LastSeq {
		t.Fatalf("the watermark stored is %s at sequence %d, want the newer one after both hits, at %d", m.Data, m.Sequence, info.State.LastSeq)
	}
	if counts, err := c.StoredHits(ctx, "tp"); err != nil || counts["h"] != 2 {
		t.Fatalf("the stream holds hits %v (%v), want 2 of h", counts, err)
	}
}

// TestOutboxSilentStream: a stream that never answers (here its subjects
// are taken by a subscriber that does not reply, as a stream without
// quorum would leave them) times out every ack. The outbox must not
// flood it: its window falls to one, each hit is sent again on its own
// after a growing backoff, and nothing new goes while one waits, where
// the agent's old publisher sent its whole window again on each timeout.
func TestOutboxSilentStream(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	nc, js := fleettest.Raw(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := js.DeleteStream(ctx, c.Subjects().HitStream()); err != nil {
		t.Fatal(err)
	}
	var published atomic.Int64
	if _, err := nc.Subscribe(c.Subjects().TraceAll(), func(*nats.Msg) { published.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h", IDBase: "h-1-", AckTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const hits = 1000
	for i := range hits {
		out.Offer("tp", []byte(`{"n":1}`), i)
	}
	rctx, stop := context.WithCancel(ctx)
	go out.Run(rctx)
	// Two seconds of timeouts, waited for by the outbox's own count.
	testsupport.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if st := out.Stats(); st.TimedOut < 20 {
			return fmt.Errorf("%d acks timed out", st.TimedOut)
		}
		return nil
	})
	stop()
	<-out.Done()
	st := out.Stats()
	if st.Window != 1 || st.Stored != 0 {
		t.Fatalf("stats %+v: want a window of 1 and nothing stored", st)
	}
	// Each publish is either a first send or a send again of a hit whose
	// ack timed out; the window keeps the first sends few.
	if st.Sent > st.TimedOut+8 || st.Sent-st.Resent > 8 {
		t.Fatalf("%d publishes (%d first sends) for %d timeouts: want each timeout sent again once, and at most the first window's 8 new hits", st.Sent, st.Sent-st.Resent, st.TimedOut)
	}
	t.Logf("%d publishes, %d timeouts, %d seen by the subscriber", st.Sent, st.TimedOut, published.Load())
}

// TestOfferHitMoreLeavesTogether: hits offered with more to an idle
// outbox wait for Wake and leave together, although they come a
// millisecond apart, time enough for a woken sender to send each alone.
func TestOfferHitMoreLeavesTogether(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h", IDBase: "h-1-"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-out.Done() }()
	go out.Run(rctx)
	// One hit alone, stored: the sender is then idle.
	first := fleet.Hit{Tracepoint: "tp", Host: "h"}
	out.OfferHit(&first, 0, false)
	if left := out.Flush(ctx); left != 0 {
		t.Fatalf("%d hits never stored", left)
	}
	const n = 50
	for i := 1; i <= n; i++ {
		h := fleet.Hit{Tracepoint: "tp", Host: "h", Pid: i}
		if !out.OfferHit(&h, i, true) {
			t.Fatalf("hit %d refused", i)
		}
		// Not a wait for anything: the gap a sender woken by each
		// hit would send it alone in.
		time.Sleep(time.Millisecond)
	}
	out.Wake()
	if left := out.Flush(ctx); left != 0 {
		t.Fatalf("%d hits never stored", left)
	}
	// The sender may still have been finishing its pass over the first
	// hit's ack when the first of them came: at most that one leaves
	// apart.
	if st := out.Stats(); st.Stored != n+1 || st.Sent > 3 || st.Batched < n-1 {
		t.Fatalf("stats %+v: want the first hit alone, then the %d offered with more together", st, n)
	}
}
