package dlvvalue

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-delve/delve/service/api"
)

// TestValueStringAsDelve: the values valueString prints itself print as
// Delve's printer prints them, and the others go to it.
func TestValueStringAsDelve(t *testing.T) {
	for _, v := range []api.Variable{
		{Kind: reflect.Int, Value: "-12"}, {Kind: reflect.Uint8, Value: "255"}, {Kind: reflect.Bool, Value: "true"},
		{Kind: reflect.Float64, Value: "1.5"}, {Kind: reflect.Float32, Value: "+Inf"}, {Kind: reflect.Int, Value: ""},
		{Kind: reflect.String, Value: "héllo\n\"x\"\x00", Len: 9}, {Kind: reflect.String, Value: "abc", Len: 70},
		{Kind: reflect.String, Value: "", Len: 0}, {Kind: reflect.String, Value: "\xff", Len: 1},
		{Kind: reflect.Int, Value: "3", Unreadable: "x"}, {Kind: reflect.String, Value: "a", Len: 1, Addr: 0},
	} {
		if got, want := valueString(&v), v.StringWithOptions("", "", api.PrettyShortenType); got != want {
			t.Errorf("%+v: got %q, Delve prints %q", v, got, want)
		}
	}
}

// TestPrintValueAsDelve: printValue prints the composite values it takes
// as Delve's printer prints them, and leaves the others to it.
func TestPrintValueAsDelve(t *testing.T) {
	x := api.Variable{Name: "X", Kind: reflect.Int, Type: "int", Value: "1", Addr: 0xc000010000}
	s := api.Variable{Name: "S", Kind: reflect.String, Type: "string", Value: "ab", Len: 5, Addr: 0xc000010008}
	point := api.Variable{Kind: reflect.Struct, Type: "example.com/geo.Point", Addr: 0xc000010000, Len: 2, Children: []api.Variable{x, s}}
	deep := api.Variable{Kind: reflect.Struct, Type: "main.Point", Addr: 0xc000010000, Len: 2}
	nilPtr := api.Variable{Kind: reflect.Ptr, Type: "*main.Point", Value: "0", Addr: 0xc000020000, Children: []api.Variable{{Kind: reflect.Struct, Type: "main.Point"}}}
	ptr := api.Variable{Kind: reflect.Ptr, Type: "*example.com/geo.Point", Addr: 0xc000020000, Children: []api.Variable{point}}
	elems := []api.Variable{{Kind: reflect.Int, Type: "int", Value: "7", Addr: 1}, {Kind: reflect.Int, Type: "int", Value: "8", Addr: 2}}
	unreadable := api.Variable{Name: "U", Kind: reflect.Int, Type: "int", Unreadable: "could not read"}
	voidData := api.Variable{Kind: reflect.Invalid, Type: "void"}
	for i, v := range []api.Variable{
		point, ptr, nilPtr,
		{Kind: reflect.Struct, Type: "main.Outer", Addr: 1, Len: 3, Children: []api.Variable{{Name: "In", Kind: reflect.Struct, Type: "main.Point", Addr: 1, Len: 2, Children: []api.Variable{x, x}}, unreadable, {Name: "P", Kind: reflect.Ptr, Type: "*main.Point", Addr: 1, Children: []api.Variable{deep}}}},
		{Kind: reflect.Ptr, Type: "*main.Point", Addr: 1, Children: []api.Variable{deep}},
		{Kind: reflect.Slice, Type: "[]int", Base: 0xc000030000, Len: 5, Cap: 8, Addr: 1, Children: elems},
		{Kind: reflect.Slice, Type: "[]int", Base: 0xc000030000, Len: 2, Cap: 2, Addr: 1, Children: elems},
		{Kind: reflect.Slice, Type: "[]int", Addr: 1},
		{Kind: reflect.Slice, Type: "[]int", Base: 0xc000030000, Addr: 1, Children: []api.Variable{}},
		{Kind: reflect.Slice, Type: "[]int", Base: 0xc000030000, Len: 3, Addr: 1},
		{Kind: reflect.Array, Type: "[3]int", Len: 3, Cap: 3, Addr: 1, Children: elems},
		{Kind: reflect.Slice, Type: "[]*main.Point", Base: 1, Len: 2, Cap: 2, Addr: 1, Children: []api.Variable{ptr, nilPtr}},
		{Kind: reflect.Interface, Type: "error", Addr: 1, Children: []api.Variable{{Name: "data", Kind: reflect.Ptr, Type: "*errors.errorString", Addr: 2, Children: []api.Variable{{Kind: reflect.Struct, Type: "errors.errorString", Addr: 3, Len: 1, Children: []api.Variable{{Name: "s", Kind: reflect.String, Type: "string", Value: "boom", Len: 4, Addr: 3}}}}}}},
		{Kind: reflect.Interface, Type: "interface {}", Addr: 1, Children: []api.Variable{voidData}},
		{Kind: reflect.Interface, Type: "interface {}", Addr: 1, Children: []api.Variable{{Name: "data", Kind: reflect.Int, Type: "int", Value: "4", Addr: 2}}},
		{Kind: reflect.Interface, Type: "main.Labeler", Addr: 1, Children: []api.Variable{{Name: "data", Kind: reflect.Ptr, Type: "*main.Shape", Addr: 2, Children: []api.Variable{{Kind: reflect.Struct, Type: "main.Shape", Len: 1}}}}},
	} {
		want := v.StringWithOptions("", "", api.PrettyShortenType)
		got, ok := printValue(&v)
		if ok && got != want {
			t.Errorf("%d: printValue %q, Delve prints %q", i, got, want)
		}
		if got := valueString(&v); got != want {
			t.Errorf("%d: valueString %q, Delve prints %q", i, got, want)
		}
	}
	// The maps, channels and functions of a hit are Delve's to print.
	if _, ok := printValue(&api.Variable{Kind: reflect.Map, Type: "map[string]int", Addr: 1}); ok {
		t.Error("printValue printed a map")
	}
	if _, ok := printValue(&point); !ok {
		t.Error("printValue left a struct of numbers and strings to Delve")
	}
}

// TestEmptyPieces: the bytes a location's text holds in no piece are its
// empty pieces and what follows its last piece; a location not made of
// pieces has none.
func TestEmptyPieces(t *testing.T) {
	for _, c := range []struct {
		loc  string
		size int64
		want []hole
	}{
		{"[0x39:0x4aa19c] DW_OP_call_frame_cfa DW_OP_piece 0x8 DW_OP_piece 0x8 ", 16, []hole{{8, 8}}},
		{"[block] DW_OP_piece 0x8 DW_OP_reg3(Rbx) DW_OP_piece 0x8 ", 16, []hole{{0, 8}}},
		{"[0x58:0x4aa20c] DW_OP_call_frame_cfa DW_OP_piece 0x8 DW_OP_fbreg 0x8 DW_OP_piece 0x8 DW_OP_piece 0x8 ", 24, []hole{{16, 8}}},
		{"[block] DW_OP_reg0(Rax) DW_OP_piece 0x4 ", 8, []hole{{4, 4}}},
		{"[block] DW_OP_reg0(Rax) DW_OP_piece 0x8 DW_OP_reg3(Rbx) ", 16, nil},
		{"[0x2c:0x4aa19c] DW_OP_call_frame_cfa ", 8, nil},
		{"[block] DW_OP_reg2(Rcx) ", 8, nil},
		{"", 8, nil},
	} {
		if got := emptyPieces(c.loc, c.size); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: holes %v, want %v", c.loc, got, c.want)
		}
	}
}

// TestDroppedCapPrints: a slice whose capacity was left out prints it as
// an unreadable part, with and without Delve's printer.
func TestDroppedCapPrints(t *testing.T) {
	elems := []api.Variable{{Kind: reflect.Int, Type: "int", Value: "7", Addr: 1}}
	xs := api.Variable{Kind: reflect.Slice, Type: "[]int", Addr: 1, Base: 2, Len: 1, Cap: capDropped, Children: elems}
	m := api.Variable{Kind: reflect.Map, Type: "map[int]int", Addr: 3, Base: 4}
	for _, v := range []api.Variable{xs, {Kind: reflect.Struct, Type: "main.S", Addr: 1, Len: 2, Children: []api.Variable{xs, m}}} {
		if got := valueString(&v); !strings.Contains(got, "cap: (unreadable optimized away), [7]") {
			t.Errorf("%s prints %q", v.Type, got)
		}
	}
}
