package delve

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	var b bucket
	b.init(10)
	now := time.Unix(1000, 0)
	n := 0
	for range 100 {
		if b.take(now) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("burst allowed %d, want 10", n)
	}
	if !b.take(now.Add(100 * time.Millisecond)) {
		t.Fatal("no token after a tenth of a second at 10/s")
	}
	var off bucket
	off.init(0)
	for range 1000 {
		if !off.take(now) {
			t.Fatal("a zero rate must not limit")
		}
	}
}
