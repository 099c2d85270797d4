package delve

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestPinnerIdler: a worker pinned to CPU 0 moves when others kept CPU 0
// busy and another allowed CPU was idle; not for its own work, not to a busy
// or disallowed CPU.
func TestPinnerIdler(t *testing.T) {
	var allowed unix.CPUSet
	allowed.Set(0)
	allowed.Set(1)
	allowed.Set(3) // 2 is not allowed
	p := &pinner{allowed: allowed, cpu: 0}
	last := cpuTimes{busy: map[int]uint64{0: 0, 1: 0, 2: 0, 3: 0}, idle: map[int]uint64{0: 0, 1: 0, 2: 0, 3: 0}}
	reading := func(busy, idle map[int]uint64, own uint64) cpuTimes {
		return cpuTimes{busy: busy, idle: idle, own: own}
	}
	for _, tc := range []struct {
		name string
		now  cpuTimes
		want int
	}{
		{"others busy on 0, 1 idle", reading(map[int]uint64{0: 90, 1: 10, 2: 0, 3: 60}, map[int]uint64{0: 10, 1: 90, 2: 100, 3: 40}, 10), 1},
		{"the worker's own work on 0", reading(map[int]uint64{0: 90, 1: 10, 2: 0, 3: 60}, map[int]uint64{0: 10, 1: 90, 2: 100, 3: 40}, 80), -1},
		{"every allowed CPU busy (2 idle, not allowed)", reading(map[int]uint64{0: 90, 1: 80, 2: 0, 3: 70}, map[int]uint64{0: 10, 1: 20, 2: 100, 3: 30}, 0), -1},
		{"the idlest of two", reading(map[int]uint64{0: 95, 1: 40, 2: 0, 3: 5}, map[int]uint64{0: 5, 1: 60, 2: 100, 3: 95}, 0), 3},
		{"0 mostly idle", reading(map[int]uint64{0: 20, 1: 0, 2: 0, 3: 0}, map[int]uint64{0: 80, 1: 100, 2: 100, 3: 100}, 0), -1},
		{"no reading", cpuTimes{}, -1},
	} {
		if got := p.idler(last, tc.now); got != tc.want {
			t.Errorf("%s: move to %d, want %d", tc.name, got, tc.want)
		}
	}
}
