package dlvvalue

import (
	"debug/dwarf"
	"reflect"
	_ "unsafe" // for go:linkname

	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/dwarf/reader"
	"github.com/go-delve/delve/pkg/proc"
)

// inlinedAt reports whether pc, in fn of bi, is in a call the compiler
// inlined into fn: Delve reads the variables there from the inlined
// function's own DWARF entry, which a scope of fn does not see (a
// condition's operands would read as no variable at all, so as nothing
// left out). Where it cannot tell, it says so too, and the first hit
// decides. Delve's stack walk tells an inlined call the same way
// (reader.InlineStack over the function's tree), but exports neither the
// tree nor where it lies.
func inlinedAt(bi *proc.BinaryInfo, fn *proc.Function, pc uint64) bool {
	img := bi.PCToImage(pc)
	off := reflect.ValueOf(fn).Elem().FieldByName("offset")
	if img == nil || !off.IsValid() || !off.CanUint() {
		return true
	}
	tree, err := dwarfTree(img, dwarf.Offset(off.Uint()))
	if err != nil || tree == nil {
		return true
	}
	return len(reader.InlineStack(tree, pc)) > 0
}

// dwarfTree is Delve's cached tree of the DWARF entry at off of img.
//
//go:linkname dwarfTree github.com/go-delve/delve/pkg/proc.(*Image).getDwarfTree
func dwarfTree(img *proc.Image, off dwarf.Offset) (*godwarf.Tree, error)
