package dlvvalue_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
)

const droppedDir = "../../ebpf/testdata/targets/dropped"

// TestCondDroppedAt: at the marked lines of an optimized build of the
// dropped target, a condition is told from DWARF alone whether it reads a
// part the compiler left out there, before any hit.
func TestCondDroppedAt(t *testing.T) {
	bi := loadDropped(t)
	file := droppedFile(bi)
	for _, c := range []struct {
		marker, cond, want string
	}{
		{"pair", "p.b == 0", "p.b"},
		{"pair", "(p).b != 7 && k > 0", "(p).b"},
		{"pair", "p.a == 1", ""},
		{"pair", "k > 3 || p.a < 0", ""},
		{"pair", "p == p", "p"},
		{"slice", "len(xs) == 3", ""},
		{"slice", "xs[1] == 3", ""},
		{"slice", "cap(xs) == 3", "xs"},
		{"string", "len(s) == 5", "s"},
		{"string", "s == \"hello\"", "s"},
		{"iface", "k == 1", ""},
		{"iface", "x != nil", "x"},
		{"iface", "x.(int) == 41", "x"},
		{"pair", "main.sink > 0", ""},
	} {
		line := agenttest.MarkerLine(t, droppedDir+"/main.go", c.marker)
		at := bi.AllPCsForFileLines(file, []int{line})[line]
		if len(at) == 0 {
			t.Fatalf("no PC at %s:%d", file, line)
		}
		for _, pc := range at {
			got, ok := dlvvalue.CondDroppedAt(bi, pc, c.cond)
			if !ok {
				t.Errorf("%s at %#x (%s): not decided", c.cond, pc, c.marker)
				continue
			}
			if got != c.want {
				t.Errorf("%s at %#x (%s): reads left out %q, want %q", c.cond, pc, c.marker, got, c.want)
			}
		}
	}
}

// TestCondDroppedAtInlined: at the line of an inlined call, where Delve
// reads the variables from the inlined function's own frame, DWARF alone
// does not decide a condition: DroppedInCondition leaves each such PC to
// its first hit, which the backends then must see.
func TestCondDroppedAtInlined(t *testing.T) {
	bi := loadDropped(t)
	line := agenttest.MarkerLine(t, droppedDir+"/main.go", "inlined")
	at := bi.AllPCsForFileLines(droppedFile(bi), []int{line})[line]
	if len(at) == 0 {
		t.Fatalf("no PC at inlined's line %d", line)
	}
	for _, pc := range at {
		if fn := bi.PCToFunc(pc); fn == nil || fn.Name != "main.callsInlined" {
			t.Fatalf("inlined's line at %#x is in %v, want inlined into main.callsInlined", pc, fn)
		}
		if _, ok := dlvvalue.CondDroppedAt(bi, pc, "p.b > 6"); ok {
			t.Errorf("p.b > 6 at %#x decided from DWARF, want it left to the first hit", pc)
		}
	}
	undecided, err := dlvvalue.DroppedInCondition(bi, at, "p.b > 6")
	if err != nil || len(undecided) != len(at) {
		t.Fatalf("DroppedInCondition at inlined's PCs: %v undecided, %v; want all %d undecided", undecided, err, len(at))
	}
}

// TestPieceCacheByPC: a PieceCache keeps what is left out of a variable
// by PC: p of the dropped target is whole on the line before pair's, where
// p.b is still used, and without p.b at pair's, whichever is read first.
func TestPieceCacheByPC(t *testing.T) {
	bi := loadDropped(t)
	line := agenttest.MarkerLine(t, droppedDir+"/main.go", "pair")
	pcOf := func(line int) uint64 {
		at := bi.AllPCsForFileLines(droppedFile(bi), []int{line})[line]
		if len(at) == 0 {
			t.Fatalf("no PC at line %d", line)
		}
		return at[0]
	}
	before, pair := pcOf(line-1), pcOf(line)
	read := func(pc uint64) *proc.Variable {
		v, err := dlvvalue.FakeScope(bi, pc).EvalExpression("p", proc.LoadConfig{})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if dlvvalue.DroppedOfVar(read(before)) != nil || dlvvalue.DroppedOfVar(read(pair)) == nil {
		t.Fatalf("p at line %d: %+v, at pair's: %+v; want whole, then without p.b", line-1, dlvvalue.DroppedOfVar(read(before)), dlvvalue.DroppedOfVar(read(pair)))
	}
	for _, order := range [][]uint64{{before, pair}, {pair, before}} {
		var c dlvvalue.PieceCache
		for range 2 {
			for _, pc := range order {
				if got, want := c.DroppedAtPC(pc, read(pc)), dlvvalue.DroppedOfVar(read(pc)); !reflect.DeepEqual(got, want) {
					t.Errorf("cached at %#x: %+v, want %+v", pc, got, want)
				}
			}
		}
	}
}

func loadDropped(t *testing.T) *proc.BinaryInfo {
	t.Helper()
	bin := agenttest.BuildTarget(t, droppedDir)
	bi := proc.NewBinaryInfo("linux", "amd64", false)
	if err := bi.LoadBinaryInfo(bin, 0, nil); err != nil {
		t.Fatal(err)
	}
	return bi
}

// droppedFile is the dropped target's main.go as bi names it.
func droppedFile(bi *proc.BinaryInfo) string {
	for _, f := range bi.Sources {
		if strings.HasSuffix(f, "/dropped/main.go") {
			return f
		}
	}
	return ""
}
