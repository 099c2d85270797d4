package agent

import (
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	var b TokenBucket
	b.Init(10)
	now := time.Unix(1000, 0)
	n := 0
	for range 100 {
		if b.Take(now) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("burst allowed %d, want 10", n)
	}
	if !b.Take(now.Add(100 * time.Millisecond)) {
		t.Fatal("no token after a tenth of a second at 10/s")
	}
	var off TokenBucket
	off.Init(0)
	for range 1000 {
		if !off.Take(now) {
			t.Fatal("a zero rate must not limit")
		}
	}
}
