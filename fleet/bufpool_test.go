package fleet

import "testing"

// TestBufClass: every size has the smallest class that holds it, a
// quarter of a power of two apart, and the classes' sizes rise with
// their number.
func TestBufClass(t *testing.T) {
	for _, tc := range []struct{ n, class, size int }{
		{0, 0, 256}, {1, 0, 256}, {256, 0, 256}, {257, 1, 320}, {320, 1, 320}, {321, 2, 384},
		{512, 4, 512}, {513, 5, 640}, {1100, 9, 1280}, {1 << 20, bufClasses - 1, 1 << 20},
	} {
		if class := bufClass(tc.n); class != tc.class || bufSize(class) != tc.size {
			t.Errorf("bufClass(%d) = %d of size %d; want %d of size %d", tc.n, class, bufSize(class), tc.class, tc.size)
		}
	}
	if class := bufClass(1<<20 + 1); class != -1 {
		t.Errorf("bufClass(1 MiB + 1) = %d, want -1", class)
	}
	last := 0
	for n := 1; n <= 1<<20; n += 97 {
		class := bufClass(n)
		size := bufSize(class)
		if size < n || size > max(256, n+n/4) {
			t.Fatalf("bufClass(%d): size %d", n, size)
		}
		if bufClass(size) != class {
			t.Fatalf("class %d's size %d is in class %d", class, size, bufClass(size))
		}
		if class < last {
			t.Fatalf("bufClass(%d) = %d, below the class of a smaller size, %d", n, class, last)
		}
		last = class
	}
}

// TestBufPool: a buffer put back is given again for a size of its class;
// one too large to keep, or grown out of its class, is not kept.
func TestBufPool(t *testing.T) {
	var p bufPool
	m := p.get(1000)
	if len(m.b) != 0 || cap(m.b) != 1024 {
		t.Fatalf("get(1000): len %d cap %d, want 0 and 1024", len(m.b), cap(m.b))
	}
	m.b = append(m.b, "hit"...)
	// sync.Pool drops a quarter of what is put under the race detector.
	for i := 0; i < 100 && p.reused.Load() == 0; i++ {
		p.put(m)
		if again := p.get(900); again != m {
			m = again
			continue
		}
		if len(m.b) != 0 {
			t.Fatalf("get(900) gave again a buffer of %d bytes, not empty", len(m.b))
		}
	}
	if p.reused.Load() == 0 {
		t.Fatalf("a buffer put back was never given again")
	}
	big := p.get(2 << 20)
	if cap(big.b) != 2<<20 {
		t.Fatalf("get(2 MiB): cap %d", cap(big.b))
	}
	grown := p.get(300)
	grown.b = append(grown.b, make([]byte, 1000)...)
	for range 100 {
		p.put(big)
		p.put(grown)
	}
	if n := p.reused.Load(); p.get(2<<20) == big || p.get(300) == grown || p.reused.Load() != n {
		t.Fatalf("a buffer too large, or grown, was kept")
	}
}
