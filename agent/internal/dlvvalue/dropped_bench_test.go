package dlvvalue_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/service/api"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
)

// BenchmarkDroppedOfVar measures what telling the parts left out of a
// variable held in pieces costs at each hit (the text of its location,
// then DroppedOf), against converting the same variable for the hit
// (api.ConvertVar), which every hit pays anyway: p of the dropped target
// at its pair line, a struct of two words with one left out; and through
// the PieceCache the backends keep it in, by PC.
func BenchmarkDroppedOfVar(b *testing.B) {
	dir := "../../ebpf/testdata/targets/dropped"
	bin := agenttest.BuildTarget(b, dir)
	bi := proc.NewBinaryInfo("linux", "amd64", false)
	if err := bi.LoadBinaryInfo(bin, 0, nil); err != nil {
		b.Fatal(err)
	}
	var file string
	for _, f := range bi.Sources {
		if strings.HasSuffix(f, filepath.Join("dropped", "main.go")) {
			file = f
		}
	}
	line := agenttest.MarkerLine(b, dir+"/main.go", "pair")
	pcs := bi.AllPCsForFileLines(file, []int{line})[line]
	if len(pcs) == 0 {
		b.Fatalf("no code at %s:%d", file, line)
	}
	scope := dlvvalue.FakeScope(bi, pcs[0])
	v, err := scope.EvalExpression("p", proc.LoadConfig{MaxStructFields: -1, MaxVariableRecurse: 1})
	if err != nil || dlvvalue.DroppedOfVar(v) == nil {
		b.Fatalf("p at %#x: %v, %+v: want a part left out", pcs[0], err, v)
	}
	var convert, dropped, cached float64
	b.Run("ConvertVar", func(b *testing.B) {
		for b.Loop() {
			api.ConvertVar(v)
		}
		convert = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("droppedOfVar", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dlvvalue.DroppedOfVar(v)
		}
		dropped = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	var cache dlvvalue.PieceCache
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cache.DroppedAtPC(pcs[0], v)
		}
		cached = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	if convert > 0 {
		b.Logf("what is left out costs %.2fx the conversion of the same variable read anew, %.3fx through a PieceCache", dropped/convert, cached/convert)
	}
}
