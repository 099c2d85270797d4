package lsp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/lsp"
)

// syntheticHit is a hit as the loop target's tracepoint sends it: two args,
// four locals.
func syntheticHit(i int) fleet.Placed {
	return fleet.Placed{Order: uint64(i + 1), CoordinatedTime: time.Unix(0, int64(i)), Hit: fleet.Hit{
		Tracepoint: "bench", Host: fmt.Sprintf("host-%d", i%4), Pid: 1000 + i%16,
		Process:   fleet.ProcessRef{Exe: "orders", Module: "github.com/acme/orders"},
		Goroutine: int64(i % 64), Time: int64(i), File: "/src/orders/main.go", Line: 1 + i%1000, Function: "main.charge",
		Args: []fleet.Variable{{Name: "orderID", Type: "int", Value: fmt.Sprint(i)}, {Name: "total", Type: "float64", Value: "99.5"}},
		Locals: []fleet.Variable{
			{Name: "approved", Type: "bool", Value: "true"}, {Name: "cents", Type: "int", Value: "9950"},
			{Name: "masked", Type: "string", Value: `"**** 0002"`}, {Name: "reason", Type: "string", Value: `""`},
		},
		Seq: uint64(i + 1), ServerTime: time.Unix(0, int64(i)),
	}}
}

// BenchmarkIngest adds synthetic hits over 1000 lines to an aggregate and
// reports hits per second; every hit must be counted.
func BenchmarkIngest(b *testing.B) {
	hits := make([]fleet.Placed, 4096)
	for i := range hits {
		hits[i] = syntheticHit(i)
	}
	agg := lsp.NewAggregate(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		agg.Add("/w/main.go", hits[i%len(hits)])
	}
	b.StopTimer()
	if n, _ := agg.Hits(); n != uint64(b.N) {
		b.Fatalf("aggregate counted %d hits of %d", n, b.N)
	}
	var total uint64
	for _, l := range agg.File("/w/main.go") {
		total += l.Count
	}
	if total != uint64(b.N) {
		b.Fatalf("lines hold %d hits of %d", total, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hits/s")
}

// BenchmarkMemoryPer1MHits holds 1M hits over 1000 lines and reports the
// heap the aggregate keeps.
func BenchmarkMemoryPer1MHits(b *testing.B) {
	hits := make([]fleet.Placed, 4096)
	for i := range hits {
		hits[i] = syntheticHit(i)
	}
	var held float64
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		agg := lsp.NewAggregate(0)
		for j := 0; j < 1_000_000; j++ {
			agg.Add("/w/main.go", hits[j%len(hits)])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held += float64(after.HeapAlloc) - float64(before.HeapAlloc)
		runtime.KeepAlive(agg)
	}
	b.ReportMetric(held/float64(b.N)/(1<<20), "MiB/1Mhits")
}

// BenchmarkHitToRefresh publishes hits to a real NATS server and measures
// the time until the client receives workspace/codeLens/refresh, and until
// textDocument/codeLens shows the new count, with the default throttle.
// Hits come at random intervals of 0–400ms, so the throttle's wait is
// sampled at every phase. Run with -benchtime=100x.
func BenchmarkHitToRefresh(b *testing.B) {
	s := fleettest.RunServer(b)
	c := fleettest.Connect(b, s)
	dir := b.TempDir()
	file := filepath.Join(dir, "main.go")
	src := "package main\n\nfunc main() {\n\tcharge(1)\n}\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	sess := startSession(b, lsp.Options{})
	sess.initialize(dir, map[string]any{"nats": s.ClientURL(), "history": "1m"})
	u := uri.File(file)
	ctx := context.Background()
	if err := sess.server.DidOpen(ctx, &protocol.DidOpenTextDocumentParams{TextDocument: protocol.TextDocumentItem{URI: u, LanguageID: "go", Version: 1, Text: src}}); err != nil {
		b.Fatal(err)
	}
	hits, err := c.NewHitPublisher("bench", 10*time.Second, 1)
	if err != nil {
		b.Fatal(err)
	}
	idBase := fmt.Sprintf("latency-%d-", time.Now().UnixNano()) // ids the stream has not seen
	var toRefresh, toLens []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond) // pacing, not an assertion
		for len(sess.client.lensRefresh) > 0 {
			<-sess.client.lensRefresh
		}
		h := syntheticHit(i)
		h.Host, h.File, h.Line, h.Seq, h.ServerTime = "bench", file, 4, 0, time.Time{}
		t0 := time.Now()
		if _, err := hits.Publish(hits.Msg(h.Tracepoint, fleet.Encode(&h.Hit), idBase+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		select {
		case t1 := <-sess.client.lensRefresh:
			toRefresh = append(toRefresh, t1.Sub(t0))
		case <-time.After(10 * time.Second):
			b.Fatalf("hit %d: no workspace/codeLens/refresh within 10s", i)
		}
		want := fmt.Sprintf("● %d hit", i+1)
		for {
			lenses, err := sess.server.CodeLens(ctx, &protocol.CodeLensParams{TextDocument: protocol.TextDocumentIdentifier{URI: u}})
			if err != nil {
				b.Fatal(err)
			}
			if len(lenses) == 1 && strings.HasPrefix(lenses[0].Command.Title, want) {
				break
			}
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("hit %d: lens still %+v after 10s", i, lenses)
			}
		}
		toLens = append(toLens, time.Since(t0))
	}
	b.StopTimer()
	for name, ds := range map[string][]time.Duration{"refresh": toRefresh, "lens": toLens} {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		b.ReportMetric(float64(ds[len(ds)/2])/1e6, name+"-p50-ms")
		b.ReportMetric(float64(ds[(len(ds)*99)/100])/1e6, name+"-p99-ms")
	}
}

// publishHits stores n synthetic hits on file's line 4 in s's hit stream.
func publishHits(b *testing.B, c *fleet.Client, file string, n int) {
	hits, err := c.NewHitPublisher("bench", 60*time.Second, 4096)
	if err != nil {
		b.Fatal(err)
	}
	idBase := fmt.Sprintf("bench-%d-", time.Now().UnixNano()) // ids the stream has not seen
	acks := make([]jetstream.PubAckFuture, 0, n)
	for i := 0; i < n; i++ {
		h := syntheticHit(i)
		h.Host, h.File, h.Line, h.Seq, h.ServerTime = "bench", file, 4, 0, time.Time{}
		f, err := hits.Publish(hits.Msg(h.Tracepoint, fleet.Encode(&h.Hit), idBase+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		acks = append(acks, f)
	}
	for i, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatalf("publishing hit %d: %v", i, err)
		}
	}
}

// BenchmarkStreamReadAnchor is the anchor of BenchmarkIngestFromStream:
// the same stream read with fleet's HitReader alone (ordered consumer and
// strict decoding), no language server. Their ratio is what the server
// adds. Run with -benchtime=100000x.
func BenchmarkStreamReadAnchor(b *testing.B) {
	s := fleettest.RunServer(b)
	c := fleettest.Connect(b, s)
	publishHits(b, c, "/w/main.go", b.N)
	b.ResetTimer()
	r, err := c.Hits(context.Background(), fleet.HitOptions{Replay: true})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for i := 0; i < b.N; i++ {
		if _, err := r.Next(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hits/s")
}

// BenchmarkIngestFromStream stores b.N hits in a real JetStream stream, then
// starts a language server that replays them, and reports the hits per
// second from initialize until the lens counts all of them (none lost).
// Run with -benchtime=100000x.
func BenchmarkIngestFromStream(b *testing.B) {
	s := fleettest.RunServer(b)
	c := fleettest.Connect(b, s)
	dir := b.TempDir()
	file := filepath.Join(dir, "main.go")
	src := "package main\n\nfunc main() {\n\tcharge(1)\n}\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	publishHits(b, c, file, b.N)
	b.ResetTimer()
	sess := startSession(b, lsp.Options{})
	sess.initialize(dir, map[string]any{"nats": s.ClientURL(), "history": "1h"})
	u := uri.File(file)
	want := fmt.Sprintf("● %d hit", b.N)
	testsupport.CheckFor(b, 120*time.Second, time.Millisecond, func() error {
		lenses, err := sess.server.CodeLens(context.Background(), &protocol.CodeLensParams{TextDocument: protocol.TextDocumentIdentifier{URI: u}})
		if err != nil {
			return err
		}
		if len(lenses) == 1 && (strings.HasPrefix(lenses[0].Command.Title, want+" ") || strings.HasPrefix(lenses[0].Command.Title, want+"s ")) {
			return nil
		}
		return fmt.Errorf("lens %+v, want %s…", lenses, want)
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hits/s")
}
