package fleet_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
)

// TestFilteredHits: a reader of one tracepoint receives its hits and the
// watermarks for it, and nothing of another tracepoint; a reader whose
// tracepoints change while agents publish goes on from where it was, with
// no hit lost or read twice; bad messages from a simulated agent on the
// reader's own subjects come back as errors and reading goes on.
func TestFilteredHits(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	subj := c.Subjects()
	nc, _ := fleettest.Raw(t, s)

	onlyX, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer onlyX.Close()
	moving, err := c.Hits(ctx, fleet.HitOptions{Filtered: true})
	if err != nil {
		t.Fatal(err)
	}
	defer moving.Close()

	// Two simulated agents publish x, y and z in turns, with a watermark
	// for each after every round, 300 rounds; the moving reader takes y
	// after round 100 and z too after round 200, while they publish.
	const rounds = 300
	pub := func(host, tp string, i int) {
		h := fleet.Hit{Tracepoint: tp, Host: host, Pid: i}
		if err := nc.Publish(subj.Trace(host, tp), fleet.Encode(&h)); err != nil {
			t.Error(err)
		}
	}
	mark := func(host, tp string, i int) {
		w := fleet.Watermark{Host: host, Time: int64(i), Lag: fleet.Duration(time.Millisecond)}
		if err := nc.Publish(subj.Watermark(host, tp), fleet.Encode(&w)); err != nil {
			t.Error(err)
		}
	}
	type key struct {
		host, tp string
		pid      int
	}
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range rounds {
			for _, host := range []string{"h1", "h2"} {
				for _, tp := range []string{"x", "y", "z"} {
					pub(host, tp, i)
					mark(host, tp, i)
				}
			}
		}
		nc.Flush()
	}()

	// The moving reader: nothing until it has tracepoints, then y from
	// where it starts, then y and z.
	if err := moving.SetTracepoints(ctx, []string{"y"}); err != nil {
		t.Fatal(err)
	}
	seen := map[key]bool{}
	next := func() fleet.Hit {
		t.Helper()
		h, err := moving.Next(ctx)
		if err != nil {
			t.Fatalf("reading y and z after %d hits: %v", len(seen), err)
		}
		k := key{h.Host, h.Tracepoint, h.Pid}
		if seen[k] {
			t.Fatalf("%+v read twice", k)
		}
		seen[k] = true
		return h
	}
	first := next()
	if first.Tracepoint != "y" {
		t.Fatalf("first hit of the moving reader: %+v, want one of y", first)
	}
	for len(seen) < 50 {
		if h := next(); h.Tracepoint != "y" {
			t.Fatalf("hit %+v before z was read", h)
		}
	}
	if err := moving.SetTracepoints(ctx, []string{"y", "z"}); err != nil {
		t.Fatal(err)
	}
	// From here on, every hit of y after the first read arrives once, and
	// the z hits from the moment it was added; x never.
	lastY := map[string]int{}
	done := func() bool {
		for _, host := range []string{"h1", "h2"} {
			if !seen[key{host, "y", rounds - 1}] || !seen[key{host, "z", rounds - 1}] {
				return false
			}
		}
		return true
	}
	for {
		// Until the last round is in, and then for a moment more, for
		// any hit read twice.
		rctx, rcancel := ctx, context.CancelFunc(func() {})
		if done() {
			rctx, rcancel = context.WithTimeout(ctx, 300*time.Millisecond)
		}
		h, err := moving.Next(rctx)
		rcancel()
		if done() && errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		k := key{h.Host, h.Tracepoint, h.Pid}
		if h.Tracepoint == "x" || seen[k] {
			t.Fatalf("the moving reader got %+v (seen before: %t)", k, seen[k])
		}
		seen[k] = true
		if h.Tracepoint == "y" {
			lastY[h.Host] = max(lastY[h.Host], h.Pid)
		}
	}
	<-published
	// No y lost: from its first hit to the last round, every round of
	// both hosts.
	for _, host := range []string{"h1", "h2"} {
		for i := first.Pid + 1; i < rounds; i++ {
			if !seen[key{host, "y", i}] {
				t.Fatalf("hit y of %s round %d lost across the change of tracepoints", host, i)
			}
		}
	}
	if lastY["h1"] != rounds-1 {
		t.Fatalf("last y of h1 = %d, want %d", lastY["h1"], rounds-1)
	}
	// No z lost from the first read on.
	for _, host := range []string{"h1", "h2"} {
		from := rounds
		for k := range seen {
			if k.host == host && k.tp == "z" {
				from = min(from, k.pid)
			}
		}
		if from == rounds {
			t.Fatalf("no z of %s read after z was added", host)
		}
		for i := from; i < rounds; i++ {
			if !seen[key{host, "z", i}] {
				t.Fatalf("hit z of %s round %d lost (z read from round %d)", host, i, from)
			}
		}
	}

	// The first reader: x's hits and watermarks only, every one once.
	seenX := map[key]bool{}
	marks := 0
	for len(seenX) < 2*rounds || marks < 2*rounds {
		h, w, err := onlyX.NextMessage(ctx)
		if err != nil {
			t.Fatalf("reading x after %d hits: %v", len(seenX), err)
		}
		if w != nil {
			marks++
			continue
		}
		k := key{h.Host, h.Tracepoint, h.Pid}
		if h.Tracepoint != "x" || seenX[k] {
			t.Fatalf("the reader of x got %+v (seen before: %t)", k, seenX[k])
		}
		seenX[k] = true
	}

	// Bad messages from a simulated agent, on x's subject: each comes back
	// as an error with a stable code, and the reader reads on.
	junk := []struct {
		data []byte
		code string
	}{
		{[]byte("{not json"), fleet.CodeBadRequest},
		{[]byte(`{"v":1,"tracepoint":"x","host":"h1"}`), fleet.CodeBadVersion},
		{[]byte(`{"v":2,"tracepoint":"x","host":"h1","pid":"seven"}`), fleet.CodeBadRequest},
		{[]byte(`{"v":2,"tracepoint":"x","host":"h1","file":"` + strings.Repeat("a", 900<<10) + `"}`), ""},
		// A packed batch whose block is not S2, and one that claims to
		// unpack to a gigabyte: refused before anything is unpacked.
		{[]byte(`{"v":4,"s2":"` + base64.StdEncoding.EncodeToString([]byte("not s2")) + `"}`), fleet.CodeBadRequest},
		{[]byte(`{"v":4,"s2":"` + base64.StdEncoding.EncodeToString(binary.AppendUvarint(nil, 1<<30)) + `"}`), fleet.CodeTooLarge},
	}
	for _, j := range junk {
		if err := nc.Publish(subj.Trace("h1", "x"), j.data); err != nil {
			t.Fatal(err)
		}
	}
	// Over the server's maximum payload: refused on the sender's side,
	// before the server sees it, and the sender's connection lives on.
	if err := nc.Publish(subj.Trace("h1", "x"), make([]byte, 2<<20)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("publishing 2 MiB: %v, want %v", err, nats.ErrMaxPayload)
	}
	pub("h1", "x", -1)
	for i, j := range junk {
		h, err := onlyX.Next(ctx)
		if j.code == "" {
			if err != nil || len(h.File) != 900<<10 {
				t.Fatalf("message %d: a large hit: %v", i, err)
			}
			continue
		}
		var fe *fleet.Error
		if !errors.As(err, &fe) || fe.Code != j.code {
			t.Fatalf("message %d: got %+v, %v; want an error of code %s", i, h, err, j.code)
		}
	}
	if h, err := onlyX.Next(ctx); err != nil || h.Pid != -1 {
		t.Fatalf("the hit after the bad ones: %+v, %v", h, err)
	}
}

// TestLegacyAgentHits: a hit of an agent of wire version 1, on the subject
// that version used, is stored, and a reader of every hit says what it
// does not understand and whom to upgrade.
func TestLegacyAgentHits(t *testing.T) {
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Hits(ctx, fleet.HitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, js := fleettest.Raw(t, s)
	if _, err := js.Publish(ctx, "riptrace.old-host.debugger.trace", []byte(`{"v":1,"tracepoint":"tp","host":"old-host"}`)); err != nil {
		t.Fatalf("an agent of version 1 publishing: %v", err)
	}
	_, err = r.Next(ctx)
	var fe *fleet.Error
	if !errors.As(err, &fe) || fe.Code != fleet.CodeBadVersion || !strings.Contains(fe.Message, "upgrade that agent") {
		t.Fatalf("reading a version 1 hit: %v", err)
	}
	t.Log(fe.Message)
}
