package fleet

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestHitJSON holds Encode's writing of a hit to encoding/json's, byte for
// byte, over random hits: every field of Hit and of the types in it is
// filled by reflection (a field appendJSON does not know fails here), with
// strings of the characters encoding/json escapes, invalid UTF-8 among
// them, and nil, empty and full slices.
func TestHitJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		var h Hit
		fillRandom(rnd, reflect.ValueOf(&h).Elem(), 0)
		got := Encode(&h)
		want, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("hit %d: Encode wrote\n%s\nencoding/json writes\n%s", i, got, want)
		}
	}
}

// TestHitJSONCached is TestHitJSON for hits encoded one after another with
// one hitCache, as an agent's are: their processes and frames are drawn
// from a few, so that the cache's copies are used, missed and replaced,
// at every depth, with stacks growing and shrinking; each hit must still
// be what encoding/json writes.
func TestHitJSONCached(t *testing.T) {
	rnd := rand.New(rand.NewPCG(9, 10))
	var procs [3]ProcessRef
	var frames [5]Frame
	for i := range procs {
		fillRandom(rnd, reflect.ValueOf(&procs[i]).Elem(), 0)
	}
	for i := range frames {
		fillRandom(rnd, reflect.ValueOf(&frames[i]).Elem(), 0)
	}
	var c hitCache
	hits := 0
	for i := range 3000 {
		var h Hit
		fillRandom(rnd, reflect.ValueOf(&h).Elem(), 0)
		if rnd.IntN(8) > 0 {
			h.Process = procs[rnd.IntN(len(procs))]
		}
		if rnd.IntN(8) > 0 {
			h.Stack = make([]Frame, rnd.IntN(maxCachedFrames+4))
			for d := range h.Stack {
				h.Stack[d] = frames[rnd.IntN(2)+min(d, 3)]
			}
		}
		got := h.appendJSON(nil, &c)
		want, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("hit %d: appendJSON with the cache wrote\n%s\nencoding/json writes\n%s", i, got, want)
		}
		hits++
	}
	if len(c.frames) != maxCachedFrames {
		t.Errorf("the cache kept %d frames after %d hits, want %d: the deep frames were not exercised", len(c.frames), hits, maxCachedFrames)
	}
}

// fillRandom fills v with random values, zero ones among them.
func fillRandom(rnd *rand.Rand, v reflect.Value, depth int) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		if rnd.IntN(2) == 0 {
			v.Set(reflect.ValueOf(time.Unix(rnd.Int64N(1<<33), rnd.Int64N(1e9)).In(time.FixedZone("", 3600*rnd.IntN(5)))))
		}
		return
	}
	zero := rnd.IntN(4) == 0
	switch v.Kind() {
	case reflect.String:
		if !zero {
			const chars = "aZ09 <>&\"\\/\n\r\t\b\f\x00\x1f\x7f\xff\xc3\xa9é\u2028\u2029𝄞'"
			b := make([]byte, rnd.IntN(12))
			for i := range b {
				b[i] = chars[rnd.IntN(len(chars))]
			}
			v.SetString(string(b))
		}
	case reflect.Int, reflect.Int64:
		if !zero {
			v.SetInt(rnd.Int64() >> rnd.IntN(64) * int64(1-2*rnd.IntN(2)))
		}
	case reflect.Uint64:
		if !zero {
			v.SetUint(rnd.Uint64() >> rnd.IntN(64))
		}
	case reflect.Bool:
		v.SetBool(!zero && rnd.IntN(2) == 0)
	case reflect.Pointer:
		if !zero {
			v.Set(reflect.New(v.Type().Elem()))
			fillRandom(rnd, v.Elem(), depth+1)
		}
	case reflect.Slice:
		switch {
		case zero || depth > 3:
		case rnd.IntN(4) == 0:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			n := 1 + rnd.IntN(3)
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				fillRandom(rnd, v.Index(i), depth+1)
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fillRandom(rnd, v.Field(i), depth+1)
		}
	default:
		panic("fillRandom has no case for " + v.Type().String())
	}
}

// BenchmarkEncodeHit encodes a random hit with Encode and with
// encoding/json.
func BenchmarkEncodeHit(b *testing.B) {
	rnd := rand.New(rand.NewPCG(5, 6))
	var h Hit
	fillRandom(rnd, reflect.ValueOf(&h).Elem(), 0)
	b.Run("Encode", func(b *testing.B) {
		for range b.N {
			Encode(&h)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for range b.N {
			json.Marshal(&h)
		}
	})
	// A hit of make bench's hot loop, as an agent publishes it: most of
	// its bytes are the paths and names of its process and frames.
	hot := Hit{
		Tracepoint: "trace-bb462b6035f6", Host: "bench-ebpf", Pid: 11285,
		Process: ProcessRef{
			Exe: "hot-ebpf", Module: "github.com/riptrace/riptrace", MainPackage: "github.com/riptrace/riptrace/bench/targets/hot",
			Revision: "fd27da6071909abb5861028fe56111fc2f2fa149", Build: "QzTHrz8rsxem_iC-uX5u/QX7coIfwEAZXuQ2A_TrT/bjOveuqAYc-KQp8usRY8/_rahNgiFEDdjTV1Nb7fe",
		},
		Goroutine: 1, Time: 1796491826921201866, Clock: &ClockReading{Offset: 32274, Bound: 119279},
		File: "/work/riptrace/bench/targets/hot/main.go", Line: 23, Function: "main.step",
		Args:   []Variable{{Name: "i", Type: "int", Value: "29"}, {Name: "acc", Type: "uint64", Value: "1332147233944577069"}},
		Locals: []Variable{},
		Stack: []Frame{
			{Function: "main.step", File: "/work/riptrace/bench/targets/hot/main.go", Line: 23, PC: 4856512},
			{Function: "main.main", File: "/work/riptrace/bench/targets/hot/main.go", Line: 40, PC: 4857125},
			{Function: "runtime.main", File: "/usr/local/go/src/runtime/proc.go", Line: 290, PC: 4493941},
			{Function: "runtime.goexit", File: "/usr/local/go/src/runtime/asm_amd64.s", Line: 1771, PC: 4715105},
		},
	}
	b.Run("EncodeHit/hot", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			EncodeHit(&hot)
		}
	})
}

// TestWatermarkJSON holds Encode's writing of a watermark to
// encoding/json's, byte for byte, as TestHitJSON does for hits.
func TestWatermarkJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	for i := range 3000 {
		var w Watermark
		fillRandom(rnd, reflect.ValueOf(&w).Elem(), 0)
		got := Encode(&w)
		want, err := json.Marshal(&w)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("watermark %d: Encode wrote\n%s\nencoding/json writes\n%s", i, got, want)
		}
	}
}

// BenchmarkEncodeWatermark encodes an agent's watermark with Encode and
// with encoding/json.
func BenchmarkEncodeWatermark(b *testing.B) {
	w := Watermark{Host: "web-1", Time: time.Now().UnixNano(), Lag: Duration(1500 * time.Microsecond), Clock: &ClockReading{Offset: -40123456, Bound: 312000}}
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Encode(&w)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(&w)
		}
	})
}
