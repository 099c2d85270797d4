package fleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestDecodeHitsBatch holds DecodeHits's one pass over a good batch to
// decoding each of its hits alone with Decode, over random hits, into a
// dst whose spare room holds hits from before.
func TestDecodeHitsBatch(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	for i := range 500 {
		n := 1 + rnd.IntN(5)
		var want []Hit
		var raw [][]byte
		for range n {
			var h Hit
			fillRandom(rnd, reflect.ValueOf(&h).Elem(), 0)
			b := Encode(&h)
			raw = append(raw, b)
			var d Hit
			if err := Decode(b, "hit", &d); err != nil {
				t.Fatalf("batch %d: decoding a hit alone: %v", i, err)
			}
			d.Part = len(want)
			want = append(want, d)
		}
		// Stale hits in the spare room, every field filled.
		dst := make([]Hit, 1, 1+n+2)
		for j := range dst[:cap(dst)] {
			fillRandom(rnd, reflect.ValueOf(&dst[:cap(dst)][j]).Elem(), 0)
		}
		first := dst[0]
		got, err := DecodeHits(EncodeHitBatch(raw), dst)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if !reflect.DeepEqual(got[0], first) {
			t.Fatalf("batch %d: DecodeHits changed the hit already in dst", i)
		}
		if !reflect.DeepEqual(got[1:], want) {
			t.Fatalf("batch %d: DecodeHits gave\n%+v\ndecoding each hit gives\n%+v", i, got[1:], want)
		}
	}
}

// TestDecodeHitsBatchErrors: a bad hit in a batch is still named by its
// place, and the strict decoding's unknown-field message is kept.
func TestDecodeHitsBatchErrors(t *testing.T) {
	good := Encode(&Hit{Tracepoint: "tp", File: "f.go", Line: 1})
	unknown := append([]byte(`{"colour":"red",`), good[1:]...)
	old := []byte(`{"v":1,"tracepoint":"tp"}`)
	for _, tc := range []struct {
		hits [][]byte
		want string
	}{
		{[][]byte{good, unknown}, `hit 2 of 2 in a batch: malformed hit: json: unknown field "colour": a typo, or a field of a newer riptrace than this side`},
		{[][]byte{old, good}, "hit 1 of 2 in a batch: hit has version 1"},
	} {
		_, err := DecodeHits(EncodeHitBatch(tc.hits), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeHits of %s: got %v, want an error with %q", EncodeHitBatch(tc.hits), err, tc.want)
		}
	}
}

// benchHit is a hit such as the hot loop of bench/targets/hot makes.
func benchHit(i int) Hit {
	return Hit{
		Header: Header{V: HitVersion}, Tracepoint: "tp-3f2a", Host: "bench-ebpf", Pid: 4242,
		Process:   ProcessRef{Exe: "/work/.cache/bench/bin/hot-ebpf", Module: "github.com/riptrace/riptrace", Revision: "03c7566f3a1e4b0f9d2c7e6a5b4c3d2e1f0a9b8c"},
		Goroutine: 1, Time: time.Unix(1764940000, int64(i)*1000).UnixNano(),
		Clock: &ClockReading{Bound: 120000},
		File:  "/work/main/bench/targets/hot/main.go", Line: 24, Function: "main.step",
		Args:   []Variable{{Name: "i", Type: "int", Value: fmt.Sprint(i)}, {Name: "acc", Type: "uint64", Value: "12345678901234567"}},
		Locals: []Variable{{Name: "x", Type: "uint64", Value: "<optimized away>"}},
		Stack:  []Frame{{Function: "main.step", File: "/work/main/bench/targets/hot/main.go", Line: 24, PC: 0x4a1b2c}, {Function: "main.main", File: "/work/main/bench/targets/hot/main.go", Line: 41, PC: 0x4a1d00}},
	}
}

// BenchmarkDecodeHits decodes a lone hit and batches of hits with
// DecodeHits, as a reader of the hit stream does, against encoding/json's
// json.Unmarshal of the same hits (no strictness, no version check);
// ns/hit and allocs/hit compare across sizes.
func BenchmarkDecodeHits(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		raw := make([][]byte, n)
		for i := range raw {
			h := benchHit(i)
			raw[i] = Encode(&h)
		}
		msg := raw[0]
		if n > 1 {
			msg = EncodeHitBatch(raw)
		}
		b.Run(fmt.Sprintf("DecodeHits/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var dst []Hit
			for range b.N {
				var err error
				if dst, err = DecodeHits(msg, dst[:0]); err != nil || len(dst) != n {
					b.Fatal(err, len(dst))
				}
			}
			perHit(b, n)
		})
		if n > 1 {
			packed := PackHitBatch(raw)
			b.Run(fmt.Sprintf("DecodeHits/packed/%d", n), func(b *testing.B) {
				b.ReportAllocs()
				var dst []Hit
				for range b.N {
					var err error
					if dst, err = DecodeHits(packed, dst[:0]); err != nil || len(dst) != n {
						b.Fatal(err, len(dst))
					}
				}
				perHit(b, n)
			})
		}
		b.Run(fmt.Sprintf("json.Unmarshal/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				for _, r := range raw {
					var h Hit
					if err := json.Unmarshal(r, &h); err != nil {
						b.Fatal(err)
					}
				}
			}
			perHit(b, n)
		})
	}
}

func perHit(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/hit")
}

// TestDecodeHitJSON holds decodeHit to encoding/json's strict decoding
// (Decode's) over random hits, written both by Encode and by
// encoding/json, and checks that it read them itself rather than giving
// up: a field of Hit it does not know fails here.
func TestDecodeHitJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	for i := range 3000 {
		var h Hit
		fillRandom(rnd, reflect.ValueOf(&h).Elem(), 0)
		data := Encode(&h)
		if i%2 == 1 {
			var err error
			if data, err = json.MarshalIndent(&h, "", " "); err != nil {
				t.Fatal(err)
			}
		}
		want, ok := strictHit(data)
		if !ok {
			t.Fatalf("hit %d: encoding/json refuses %s", i, data)
		}
		var got Hit
		if !decodeHit(data, &got) {
			t.Fatalf("hit %d: decodeHit gave up on %s", i, data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("hit %d: decodeHit read %s as\n%+v\nencoding/json as\n%+v", i, data, got, want)
		}
	}
}

// strictHit decodes data as Decode does, without the version check.
func strictHit(data []byte) (Hit, bool) {
	var h Hit
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if dec.Decode(&h) != nil || len(bytes.TrimSpace(data[dec.InputOffset():])) != 0 {
		return Hit{}, false
	}
	return h, true
}

// FuzzDecodeHit: whatever decodeHit reads, encoding/json's strict
// decoding reads too, into the same hit.
func FuzzDecodeHit(f *testing.F) {
	h := benchHit(3)
	good := Encode(&h)
	f.Add(good)
	for _, s := range []string{
		`{"v":2,"args":[{"name":"a","value":"\u003c\ud83d\ude00\u00e9\\\"\/\b\f\n\r\t","children":[{"name":"b"}]}]}`,
		`{"v":2,"tracepoint":"a","tracepoint":"b"}`,
		`{"v":2,"Tracepoint":"a"}`,
		`{"v":2,"pid":1.0,"line":1e2,"time":-0,"seq":-1,"dropped":01}`,
		`{"v":2,"clock":null,"trace":null,"args":null,"stack":[null],"errors":[null,"x"],"process":null,"serverTime":null}`,
		`{"v":2,"serverTime":"2026-12-05T13:00:00.5+01:00","trace":{"traceId":"t","remote":true}}`,
		`{"v":2,"file":"` + "\xff\xc3\xa9" + `"}`,
		` {"v":2} `,
		`{"v":2}x`,
		`{"v":2,"clock":{"offset":1,"bound":9223372036854775808}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got Hit
		if !decodeHit(data, &got) {
			return
		}
		want, ok := strictHit(data)
		if !ok {
			t.Fatalf("decodeHit reads %q, which encoding/json refuses", data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeHit read %q as\n%+v\nencoding/json as\n%+v", data, got, want)
		}
	})
}
