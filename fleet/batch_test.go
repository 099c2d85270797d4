package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// batchHit is hit i of tracepoint tp on host, captured at base+i ms, with
// a clock reading so that the timeline places it for certain.
func batchHit(host, tp string, base time.Time, i int) []byte {
	h := fleet.Hit{Tracepoint: tp, Host: host, Pid: i, Time: base.Add(time.Duration(i) * time.Millisecond).UnixNano(),
		Clock: &fleet.ClockReading{Bound: int64(100 * time.Microsecond)}, File: "f.go", Line: 1}
	return fleet.Encode(&h)
}

// runOutbox runs out until everything offered is stored, and returns its
// stats.
func runOutbox(t *testing.T, ctx context.Context, out *fleet.Outbox[int]) fleet.OutboxStats {
	t.Helper()
	rctx, stop := context.WithCancel(ctx)
	go out.Run(rctx)
	if left := out.Flush(ctx); left != 0 {
		t.Fatalf("%d hits and watermarks never stored", left)
	}
	stop()
	<-out.Done()
	return out.Stats()
}

// TestOutboxBatchesBacklog: hits that wait for the window leave several
// to a message, per tracepoint, each stored once; every kind of reader
// (every hit, one tracepoint's, the timeline) reads them as if each had
// come alone, in the order offered, and each watermark after the hits it
// covers. A reader of one tracepoint receives no hit of the other.
func TestOutboxBatchesBacklog(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A reader of every hit from now on, as the web UI's, open while the
	// hits are published.
	live, err := c.Hits(ctx, fleet.HitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	var stored int
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h1", IDBase: "h1-1-", Stored: func(int) { stored++ }})
	if err != nil {
		t.Fatal(err)
	}
	// Offered before it runs, as a backlog: x and y interleaved, then a
	// watermark for each, twice over.
	const perRound = 40
	base := time.Now()
	want := map[string][]int{}
	n := 0
	for round := range 2 {
		for range perRound {
			n++
			for _, tp := range []string{"x", "y"} {
				out.Offer(tp, batchHit("h1", tp, base, n), n)
				want[tp] = append(want[tp], n)
			}
		}
		w := fleet.Watermark{Host: "h1", Time: base.Add(time.Duration(n)*time.Millisecond + time.Microsecond).UnixNano(),
			Lag: fleet.Duration(5 * time.Second), Clock: &fleet.ClockReading{Bound: int64(100 * time.Microsecond)}, Final: round == 1}
		// Named in another order each round, so that the second does not
		// replace the first, as a watermark behind a backlog does within
		// a second of the last.
		tps := []string{"x", "y"}
		if round == 1 {
			tps = []string{"y", "x"}
		}
		out.OfferMarks(tps, fleet.Encode(&w))
	}
	st := runOutbox(t, ctx, out)
	if st.Stored != 4*perRound || stored != 4*perRound {
		t.Fatalf("%d hits told stored, stats %+v: want %d", stored, st, 4*perRound)
	}
	// Each round's 40 hits of a tracepoint fit one batch: four batches
	// and four watermarks.
	if st.Batches != 4 || st.Batched != 4*perRound || st.Sent != 8 {
		t.Fatalf("stats %+v: want the hits in 4 batches of %d, 8 publishes in all", st, perRound)
	}
	counts, err := c.StoredHits(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if counts["h1"] != 2*perRound {
		t.Fatalf("the stream counts %v hits of x, want %d of h1", counts, 2*perRound)
	}

	liveGot := map[string][]int{}
	for i := range 4 * perRound {
		h, err := live.Next(ctx)
		if err != nil {
			t.Fatalf("the live reader's hit %d: %v", i+1, err)
		}
		liveGot[h.Tracepoint] = append(liveGot[h.Tracepoint], h.Pid)
	}
	if fmt.Sprint(liveGot) != fmt.Sprint(want) {
		t.Fatalf("the live reader read %v, want %v", liveGot, want)
	}

	// Every hit, and one tracepoint's, by the hit reader.
	end, err := c.HitStreamEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts fleet.HitOptions
		tps  []string
	}{
		{"every hit", fleet.HitOptions{Replay: true, Until: end}, []string{"x", "y"}},
		{"x only", fleet.HitOptions{Tracepoints: []string{"x"}, Replay: true, Until: end}, []string{"x"}},
	} {
		r, err := c.Hits(ctx, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]int{}
		type id struct {
			seq  uint64
			part int
		}
		seen := map[id]bool{}
		for {
			h, w, err := r.NextMessage(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if w != nil {
				// It covers the hits captured before its time: each
				// round's, of every tracepoint read, are read before it.
				upTo := int((w.Time - base.UnixNano()) / int64(time.Millisecond))
				for _, tp := range tc.tps {
					if len(got[tp]) < upTo {
						t.Errorf("%s: a watermark of %d ms came after %d hits of %s, want %d", tc.name, upTo, len(got[tp]), tp, upTo)
					}
				}
				continue
			}
			if seen[id{h.Seq, h.Part}] {
				t.Fatalf("%s: two hits named #%d part %d", tc.name, h.Seq, h.Part)
			}
			seen[id{h.Seq, h.Part}] = true
			got[h.Tracepoint] = append(got[h.Tracepoint], h.Pid)
		}
		r.Close()
		for _, tp := range []string{"x", "y"} {
			wantTP := want[tp]
			if !contains(tc.tps, tp) {
				wantTP = nil
			}
			if fmt.Sprint(got[tp]) != fmt.Sprint(wantTP) {
				t.Errorf("%s: read hits of %s %v, want %v", tc.name, tp, got[tp], wantTP)
			}
		}
	}

	// The timeline: every hit once, in the order captured, none late or
	// uncertain (the watermarks after the batches covered them).
	tr, err := c.Timeline(ctx, fleet.HitOptions{Replay: true, Until: end}, fleet.TimelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var placed []string
	for {
		p, err := tr.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Late || p.Uncertain {
			t.Errorf("hit %s %d placed late=%v uncertain=%v (%s)", p.Tracepoint, p.Pid, p.Late, p.Uncertain, p.Note)
		}
		placed = append(placed, fmt.Sprintf("%s%d", p.Tracepoint, p.Pid))
	}
	var wantPlaced []string
	for i := 1; i <= n; i++ {
		wantPlaced = append(wantPlaced, fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", i))
	}
	// x and y of one capture time tie; the timeline breaks the tie by
	// stream order, which batching may change: compare per time.
	if len(placed) != len(wantPlaced) {
		t.Fatalf("the timeline placed %d hits, want %d: %v", len(placed), len(wantPlaced), placed)
	}
	for i := 0; i < len(placed); i += 2 {
		a, b := placed[i], placed[i+1]
		if a > b {
			a, b = b, a
		}
		if a != wantPlaced[i] || b != wantPlaced[i+1] {
			t.Fatalf("the timeline placed %v at %d, want %v", placed[i:i+2], i, wantPlaced[i:i+2])
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// sizedHit is batchHit with a captured string of pad bytes, so that hits
// can be of uneven sizes.
func sizedHit(host, tp string, base time.Time, i, pad int) []byte {
	h := fleet.Hit{Tracepoint: tp, Host: host, Pid: i, Time: base.Add(time.Duration(i) * time.Millisecond).UnixNano(),
		Clock: &fleet.ClockReading{Bound: int64(100 * time.Microsecond)}, File: "f.go", Line: 1}
	if pad > 0 {
		h.Locals = []fleet.Variable{{Name: "blob", Type: "string", Value: strings.Repeat("x", pad)}}
	}
	return fleet.Encode(&h)
}

// TestOutboxBatchStopsAtHitThatDoesNotFit: a backlog of one tracepoint's
// hits of uneven sizes leaves in batches, each ending where the next hit
// does not fit its room; the stream holds every hit once, in the order
// they were captured, by stream sequence and part. A batch used to skip
// the hit too big for its room and take the smaller ones behind it, so
// the stream held those before it.
func TestOutboxBatchStopsAtHitThatDoesNotFit(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h1", IDBase: "h1-1-"})
	if err != nil {
		t.Fatal(err)
	}
	// Every fourth hit 192 KiB, the others about 200 bytes: the third
	// big one does not fit a batch's 512 KiB, while the small ones behind
	// it would. Offered before the outbox runs, as a backlog.
	const n = 64
	base := time.Now()
	for i := range n {
		pad := 0
		if i%4 == 3 {
			pad = 192 << 10
		}
		out.Offer("x", sizedHit("h1", "x", base, i, pad), i)
	}
	if st := runOutbox(t, ctx, out); st.Stored != n || st.Batches == 0 {
		t.Fatalf("stats %+v: want %d hits stored, in batches", st, n)
	}
	end, err := c.HitStreamEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{"x"}, Replay: true, Until: end})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []int
	perMsg := map[uint64]int{}
	var lastSeq uint64
	lastPart := -1
	for {
		h, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Seq < lastSeq || h.Seq == lastSeq && h.Part <= lastPart {
			t.Fatalf("hit #%d.%d read after #%d.%d", h.Seq, h.Part, lastSeq, lastPart)
		}
		lastSeq, lastPart = h.Seq, h.Part
		got = append(got, h.Pid)
		perMsg[h.Seq]++
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the stream holds the hits in the order %v, want the order captured %v", got, want)
	}
	// Full batches ended early: more than one message, and some with
	// several hits.
	most := 0
	for _, k := range perMsg {
		most = max(most, k)
	}
	if len(perMsg) < 2 || most < 2 {
		t.Fatalf("%d messages, the largest of %d hits: want batches of several, more than one", len(perMsg), most)
	}
}

// TestBatchSentAgainStoredOnce: a batch sent again under its message id
// (its first copy stored, its ack lost) is stored once: its hits are read
// once each, and the publisher counts each stored once.
func TestBatchSentAgainStoredOnce(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := time.Now()
	var hits [][]byte
	for i := range 5 {
		hits = append(hits, batchHit("h1", "x", base, i))
	}
	pub, err := c.NewHitPublisher("h1", 10*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	for try := range 2 {
		ack, err := pub.Publish(pub.BatchMsg("x", hits, "h1-1-1+5"))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-ack.Ok():
			if a.Duplicate != (try == 1) {
				t.Fatalf("send %d: ack says duplicate=%v", try+1, a.Duplicate)
			}
		case err := <-ack.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	counts, err := c.StoredHits(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if counts["h1"] != 5 {
		t.Fatalf("the stream counts %v hits, want 5 of h1", counts)
	}
	r, err := c.Hits(ctx, fleet.HitOptions{Replay: true, Until: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 6 {
		h, err := r.Next(ctx)
		if i == 5 {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after the batch's 5 hits: %v, %+v; want the end", err, h)
			}
			break
		}
		if err != nil || h.Pid != i || h.Part != i || h.Seq != 1 {
			t.Fatalf("hit %d: %+v, %v; want pid and part %d of message #1", i, h, err, i)
		}
	}

	// The Outbox's own copy of the same batch, when its first copy was
	// stored and its ack lost, is the same message: the stream says it
	// has it, and each hit is counted stored once.
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h2", IDBase: "h2-1-"})
	if err != nil {
		t.Fatal(err)
	}
	var again [][]byte
	for i := range 5 {
		b := batchHit("h2", "x", base, i)
		again = append(again, b)
		out.Offer("x", b, i)
	}
	pub2, err := c.NewHitPublisher("h2", 10*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub2.Publish(pub2.BatchMsg("x", again, "h2-1-1+5")); err != nil {
		t.Fatal(err)
	}
	st := runOutbox(t, ctx, out)
	if st.Stored != 5 || st.Repeated != 1 || st.Batches != 1 {
		t.Fatalf("stats %+v: want one batch of 5 hits, which the stream had already", st)
	}
	if counts, err = c.StoredHits(ctx, "x"); err != nil || counts["h2"] != 5 {
		t.Fatalf("the stream counts %v (%v), want 5 hits of h2", counts, err)
	}
}

// TestHitBatchRefusedByOlderReader: a reader of wire version 2 decodes a
// batch as a hit and refuses it, saying to upgrade; one of this version
// reads its hits, and a malformed batch comes back as an error naming the
// bad hit.
func TestHitBatchRefusedByOlderReader(t *testing.T) {
	b := fleet.EncodeHitBatch([][]byte{batchHit("h", "x", time.Now(), 1), batchHit("h", "x", time.Now(), 2)})
	var h fleet.Hit
	err := fleet.Decode(b, "hit", &h)
	if e := fleet.AsError(err); e == nil || e.Code != fleet.CodeBadVersion || !strings.Contains(e.Message, "upgrade") {
		t.Fatalf("a version 2 reader's decoding of a batch: %v; want %s saying to upgrade", err, fleet.CodeBadVersion)
	}
	hits, err := fleet.DecodeHits(b, nil)
	if err != nil || len(hits) != 2 || hits[1].Pid != 2 || hits[1].Part != 1 {
		t.Fatalf("DecodeHits: %+v, %v; want the 2 hits", hits, err)
	}
	// Spaced out, not as Encode writes it: still a batch.
	spaced := strings.Replace(string(b), `{"v":3,`, `{ "v": 3, `, 1)
	if hits, err := fleet.DecodeHits([]byte(spaced), nil); err != nil || len(hits) != 2 {
		t.Fatalf("DecodeHits of a spaced batch: %d hits, %v", len(hits), err)
	}
	for _, bad := range []string{
		`{"v":3,"hits":[]}`,
		`{"v":3,"hits":[{"v":1,"tracepoint":"x"}]}`,
		`{"v":3,"hits":[` + string(batchHit("h", "x", time.Now(), 1)) + `,{"v":2,"nope":1}]}`,
		`{"v":3,"hits":[1]}`,
		`{"v":3,"hits":{}}`,
	} {
		if _, err := fleet.DecodeHits([]byte(bad), nil); fleet.AsError(err) == nil {
			t.Errorf("DecodeHits(%s): %v, want a coded error", bad, err)
		}
	}
}
