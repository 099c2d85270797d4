package fleet_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// realisticHits are n hits of tracepoint tp on host as the benchmarks
// make them, each with its own time and goroutine, encoded.
func realisticHits(tp, host string, n int) [][]byte {
	base := time.Now()
	var out [][]byte
	for i := range n {
		h := fleettest.RealisticHit(tp, host, i, 1024)
		h.Time, h.Goroutine = base.Add(time.Duration(i)*time.Millisecond).UnixNano(), int64(i)
		out = append(out, fleet.Encode(&h))
	}
	return out
}

// TestPackedBatchesThroughTheStream: an Outbox with a backlog of realistic
// hits sends them packed, a fraction of their bytes; the stream holds
// them packed, counted by their header, each once, and a small batch
// unpacked; a reader reads every hit as it was offered, in order,
// numbered by its place in its batch.
func TestPackedBatchesThroughTheStream(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h1", IDBase: "h1-1-"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	hits := realisticHits("x", "h1", n)
	raw := 0
	for i, h := range hits {
		raw += len(h)
		out.Offer("x", h, i)
	}
	st := runOutbox(t, ctx, out)
	if st.Stored != n || st.Batches < 2 || st.Batched < n-1 {
		t.Fatalf("stats %+v: want %d hits stored, all but the first in batches", st, n)
	}
	if st.BatchBytes*4 > int64(raw) {
		t.Fatalf("%d hits of %d bytes were sent in %d bytes: want them packed to a quarter or less", st.Batched, raw, st.BatchBytes)
	}
	if counts, err := c.StoredHits(ctx, "x"); err != nil || counts["h1"] != n {
		t.Fatalf("the stream counts %v (%v), want %d hits of h1", counts, err, n)
	}

	// As stored: each batch packed, which a reader of wire version 3
	// refuses, saying to upgrade.
	st2, err := c.JetStream().Stream(ctx, c.Subjects().HitStream())
	if err != nil {
		t.Fatal(err)
	}
	end, err := c.HitStreamEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	packed := 0
	for seq := uint64(1); seq <= end; seq++ {
		m, err := st2.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(fleet.HitsHeader) == "" {
			continue
		}
		if !strings.HasPrefix(string(m.Data), `{"v":4,"s2":"`) {
			t.Fatalf("message #%d, a batch, is not packed: %.40s", seq, m.Data)
		}
		packed++
		var b fleet.HitBatch
		if e := fleet.AsError(fleet.Decode(m.Data, "hit batch", &b)); e == nil || e.Code != fleet.CodeBadVersion || !strings.Contains(e.Message, "upgrade") {
			t.Fatalf("a version 3 reader's decoding of message #%d: %v; want %s saying to upgrade", seq, e, fleet.CodeBadVersion)
		}
	}
	if packed != int(st.Batches) {
		t.Fatalf("the stream holds %d packed batches, the outbox sent %d", packed, st.Batches)
	}

	// A small batch goes as its HitBatch, unpacked (see packFrom).
	small, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h2", IDBase: "h2-1-"})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range realisticHits("y", "h2", 11) {
		small.Offer("y", h, i)
	}
	if st := runOutbox(t, ctx, small); st.Batches != 1 || st.Batched != 11 {
		t.Fatalf("stats %+v: want one batch of 11", st)
	}
	smallEnd, err := c.HitStreamEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st2.GetMsg(ctx, smallEnd); err != nil || !strings.HasPrefix(string(m.Data), `{"v":3,"hits":[`) {
		t.Fatalf("the small batch as stored: %.40s, %v; want its HitBatch", m.Data, err)
	}

	readAsOffered(t, ctx, c, "x", end, hits)
}

// readAsOffered reads tracepoint tp's hits in c's stream up to end and
// checks that they are offered's, in order, each once, as offered.
func readAsOffered(t *testing.T, ctx context.Context, c *fleet.Client, tp string, end uint64, offered [][]byte) {
	t.Helper()
	r, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{tp}, Replay: true, Until: end})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var lastSeq uint64
	for i := 0; ; i++ {
		got, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			if i != len(offered) {
				t.Fatalf("the reader read %d hits, want %d", i, len(offered))
			}
			return
		}
		if err != nil {
			t.Fatalf("hit %d: %v", i, err)
		}
		if got.Seq < lastSeq {
			t.Fatalf("hit %d is #%s, after #%d", i, got.Number(), lastSeq)
		}
		lastSeq = got.Seq
		if i >= len(offered) {
			t.Fatalf("hit %d read, of %d offered", i, len(offered))
		}
		want, err := fleet.DecodeHits(offered[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		w := want[0]
		w.Seq, w.Part, w.ServerTime = got.Seq, got.Part, got.ServerTime
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("hit %d read as %+v, offered %+v", i, got, w)
		}
	}
}

// TestPackedBatchRefusedByOlderReader: a reader of wire version 2 or 3
// refuses a packed batch, saying to upgrade; one of this version reads
// it however its JSON is spaced; a batch that packing would not shrink
// is sent as a HitBatch; a malformed or oversized packed batch comes back
// as a coded error, before anything is unpacked.
func TestPackedBatchRefusedByOlderReader(t *testing.T) {
	hits := realisticHits("x", "h", 40)
	p := fleet.PackHitBatch(hits)
	if !strings.HasPrefix(string(p), `{"v":4,"s2":"`) {
		t.Fatalf("PackHitBatch of 40 realistic hits: %.40s, want a packed batch", p)
	}
	var h fleet.Hit
	if e := fleet.AsError(fleet.Decode(p, "hit", &h)); e == nil || e.Code != fleet.CodeBadVersion || !strings.Contains(e.Message, "version 4") || !strings.Contains(e.Message, "upgrade") {
		t.Fatalf("a version 2 reader's decoding of a packed batch: %v; want %s naming version 4, saying to upgrade", e, fleet.CodeBadVersion)
	}
	want, err := fleet.DecodeHits(fleet.EncodeHitBatch(hits), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fleet.DecodeHits(p, nil)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeHits of the packed batch: %d hits, %v; want the %d of its HitBatch", len(got), err, len(want))
	}
	// Written by encoding/json, spaced out: still read.
	block := s2.Encode(nil, fleet.EncodeHitBatch(hits))
	spaced := strings.Replace(string(fleet.Encode(&fleet.PackedHitBatch{S2: block})), `{"v":4,`, `{ "v": 4, `, 1)
	if got, err := fleet.DecodeHits([]byte(spaced), nil); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeHits of a spaced packed batch: %d hits, %v", len(got), err)
	}

	// Hits of random text do not pack: their HitBatch goes as it is.
	rnd := rand.New(rand.NewPCG(1, 2))
	var noise [][]byte
	for i := range 4 {
		h := fleet.Hit{Tracepoint: "x", Host: "h", Pid: i, File: "f.go", Line: 1}
		b := make([]byte, 300)
		for j := range b {
			b[j] = byte(rnd.IntN(256))
		}
		h.Message = base64.StdEncoding.EncodeToString(b)
		noise = append(noise, fleet.Encode(&h))
	}
	if b := fleet.PackHitBatch(noise); !strings.HasPrefix(string(b), `{"v":3,"hits":[`) {
		t.Fatalf("PackHitBatch of random text: %.40s, want its HitBatch", b)
	}

	packedOf := func(block []byte) string {
		return `{"v":4,"s2":"` + base64.StdEncoding.EncodeToString(block) + `"}`
	}
	bomb := append(binary.AppendUvarint(nil, 1<<30), 0, 0, 0, 0)
	for _, bad := range []struct {
		data, code string
	}{
		{`{"v":4,"s2":"not base64!"}`, fleet.CodeBadRequest},
		{packedOf([]byte("not an s2 block")), fleet.CodeBadRequest},
		{packedOf(bomb), fleet.CodeTooLarge},
		{`{"v":4}`, fleet.CodeBadRequest},
		{`{"v":4,"s2":"","hits":2}`, fleet.CodeBadRequest},
		{packedOf(s2.Encode(nil, hits[0])), fleet.CodeBadRequest},
		{packedOf(s2.Encode(nil, p)), fleet.CodeBadRequest},
		{packedOf(s2.Encode(nil, []byte(`{"v":3,"hits":[]}`))), fleet.CodeBadRequest},
		{packedOf(s2.Encode(nil, []byte(`{"v":3,"hits":[{"v":1}]}`))), fleet.CodeBadVersion},
	} {
		_, err := fleet.DecodeHits([]byte(bad.data), nil)
		if e := fleet.AsError(err); e == nil || e.Code != bad.code {
			t.Errorf("DecodeHits(%.60s): %v, want %s", bad.data, err, bad.code)
		}
	}
}

// TestPackedBatchSentAgainStoredOnce: a packed batch sent again under its
// message id is stored once, and a batch an older agent sent unpacked
// is read alongside it.
func TestPackedBatchSentAgainStoredOnce(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub, err := c.NewHitPublisher("h1", 10*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	hits := realisticHits("x", "h1", 50)
	// The packed batch twice, its first ack lost; then an older agent's
	// batch of 10, unpacked.
	for i, msg := range []*nats.Msg{
		pub.PackedBatchMsg("x", hits, "h1-1-1+50"),
		pub.PackedBatchMsg("x", hits, "h1-1-1+50"),
		pub.BatchMsg("x", hits[:10], "h1-0-1+10"),
	} {
		ack, err := pub.Publish(msg)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-ack.Ok():
			if a.Duplicate != (i == 1) {
				t.Fatalf("send %d: ack says duplicate=%v", i+1, a.Duplicate)
			}
		case err := <-ack.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	if counts, err := c.StoredHits(ctx, "x"); err != nil || counts["h1"] != 60 {
		t.Fatalf("the stream counts %v (%v), want 60 hits of h1", counts, err)
	}
	r, err := c.Hits(ctx, fleet.HitOptions{Replay: true, Until: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for {
		h, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s:%d", h.Number(), h.Goroutine))
	}
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprintf("%s:%d", fleet.HitNumber(1, i), i))
	}
	for i := range 10 {
		want = append(want, fmt.Sprintf("%s:%d", fleet.HitNumber(2, i), i))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
}

// TestOfferedHitsBuffersUsedAgain: the buffers of hits and batches the
// stream has stored are used again for the hits offered next, while
// earlier ones still wait, alone and in batches, of sizes across many
// classes; every hit reads back as it was offered, each once, in order.
func TestOfferedHitsBuffersUsedAgain(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A small window makes a backlog, sent in batches.
	out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: "h1", IDBase: "h1-1-", Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	go out.Run(rctx)
	const waves, wave = 10, 300
	var want [][]byte
	for w := range waves {
		for i := w * wave; i < (w+1)*wave; i++ {
			h := fleettest.RealisticHit("x", "h1", i, 200+(i*37)%3000)
			h.Goroutine = int64(i)
			want = append(want, fleet.Encode(&h))
			if !out.OfferHit(&h, i, false) {
				t.Fatalf("hit %d refused", i)
			}
		}
		// The next wave comes once half of this one is stored: its
		// buffers are those given back while the rest waits.
		for out.Stats().Stored < int64(w*wave+wave/2) {
			select {
			case <-ctx.Done():
				t.Fatalf("wave %d: %+v", w, out.Stats())
			case <-time.After(time.Millisecond):
			}
		}
	}
	if left := out.Flush(ctx); left != 0 {
		t.Fatalf("%d hits never stored", left)
	}
	stop()
	<-out.Done()
	st := out.Stats()
	if st.Stored != waves*wave || st.Batches == 0 {
		t.Fatalf("stats %+v: want %d hits stored, some in batches", st, waves*wave)
	}
	if n := out.BuffersReused(); n < waves*wave/4 {
		t.Fatalf("%d buffers used again for %d hits: want a quarter of them at least", n, waves*wave)
	} else {
		t.Logf("%d buffers used again for %d hits", n, waves*wave)
	}

	end, err := c.HitStreamEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	readAsOffered(t, ctx, c, "x", end, want)
}
