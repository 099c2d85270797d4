package dlvvalue_test

import (
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
	bin := agenttest.BuildTarget(t, droppedDir)
	bi := proc.NewBinaryInfo("linux", "amd64", false)
	if err := bi.LoadBinaryInfo(bin, 0, nil); err != nil {
		t.Fatal(err)
	}
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
		file := ""
		for _, f := range bi.Sources {
			if len(f) > len("dropped/main.go") && f[len(f)-len("dropped/main.go"):] == "dropped/main.go" {
				file = f
			}
		}
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
