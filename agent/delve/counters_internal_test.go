package delve

import (
	"debug/elf"
	"os"
	"reflect"
	"testing"
)

// counted is where TestTakeDroppedExact puts its probe.
//
//go:noinline
func counted(n *uint64) { *n++ }

// TestTakeDroppedExact: hits a probe counts at the closed gate while the
// count is taken, again and again, are each in exactly one of the counts
// taken. A lookup then an update of 0 lost those counted in between.
func TestTakeDroppedExact(t *testing.T) {
	if err := uprobesAvailable(); err != nil {
		t.Skipf("no uprobes here: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ps, err := newProbeSet(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.close()
	// The test binary has no symbol table: the probe goes by address, in
	// an executable loaded where it was linked.
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	typ := f.Type
	f.Close()
	if typ != elf.ET_EXEC {
		t.Fatalf("%s is %v, not a position-dependent executable", exe, typ)
	}
	pc := uint64(reflect.ValueOf(counted).Pointer())
	const slot = 7
	l, err := ps.attach(os.Getpid(), "counted", pc, 0, slot)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := ps.setGate(true); err != nil {
		t.Fatal(err)
	}
	const calls = 20000
	done := make(chan uint64)
	go func() {
		var n uint64
		for range calls {
			counted(&n)
		}
		done <- n
	}()
	var taken, takes uint64
	var ran uint64
	for ran == 0 {
		select {
		case ran = <-done:
		default:
			if n := ps.takeDropped(slot); n > 0 {
				taken += n
				takes++
			}
		}
	}
	taken += ps.takeDropped(slot)
	t.Logf("%d calls, %d counted in %d takes", ran, taken, takes)
	if taken != ran {
		t.Fatalf("%d hits counted at the gate for %d calls", taken, ran)
	}
}
