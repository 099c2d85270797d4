package dlvvalue

import (
	"go/parser"
	"reflect"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/service/api"
)

// TestDroppedOf: what empty pieces leave out of a value, by its type: a
// field, a slice's capacity only, an interface's data only; a string
// without its length is left out whole.
func TestDroppedOf(t *testing.T) {
	word := func(name string) *godwarf.StructField {
		return &godwarf.StructField{Name: name, Type: &godwarf.IntType{BasicType: godwarf.BasicType{CommonType: godwarf.CommonType{ByteSize: 8, Name: "int"}}}}
	}
	fields := func(names ...string) []*godwarf.StructField {
		var out []*godwarf.StructField
		for i, n := range names {
			f := word(n)
			f.ByteOffset = int64(8 * i)
			out = append(out, f)
		}
		return out
	}
	common := func(name string, size int64) godwarf.CommonType {
		return godwarf.CommonType{Name: name, ByteSize: size}
	}
	pair := &godwarf.StructType{CommonType: common("main.pair", 16), Field: fields("a", "b")}
	slice := &godwarf.SliceType{StructType: godwarf.StructType{CommonType: common("[]int", 24), Field: fields("array", "len", "cap")}}
	str := &godwarf.StringType{StructType: godwarf.StructType{CommonType: common("string", 16), Field: fields("str", "len")}}
	eface := &godwarf.StructType{CommonType: common("runtime.eface", 16), Field: fields("_type", "data")}
	iface := &godwarf.InterfaceType{TypedefType: godwarf.TypedefType{CommonType: common("interface {}", 16), Type: eface}}
	const two = "[block] DW_OP_reg0(Rax) DW_OP_piece 0x8 DW_OP_piece 0x8 "
	for _, c := range []struct {
		typ  godwarf.Type
		loc  string
		want *Dropped
	}{
		{pair, two, &Dropped{Parts: map[int]*Dropped{1: {Whole: true}}}},
		{pair, "[block] DW_OP_reg0(Rax) DW_OP_piece 0x8 DW_OP_reg3(Rbx) DW_OP_piece 0x8 ", nil},
		{slice, "[block] DW_OP_reg0(Rax) DW_OP_piece 0x8 DW_OP_reg3(Rbx) DW_OP_piece 0x8 DW_OP_piece 0x8 ", &Dropped{Cap: true}},
		{slice, "[block] DW_OP_reg0(Rax) DW_OP_piece 0x8 DW_OP_piece 0x8 DW_OP_reg3(Rbx) DW_OP_piece 0x8 ", &Dropped{Whole: true}},
		{str, two, &Dropped{Whole: true}},
		{iface, two, &Dropped{Parts: map[int]*Dropped{0: {Whole: true}}}},
		{iface, "[block] DW_OP_piece 0x8 DW_OP_reg0(Rax) DW_OP_piece 0x8 ", &Dropped{Whole: true}},
	} {
		if got := DroppedOf(c.typ, c.loc); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s at %q: %+v, want %+v", c.typ.Common().Name, c.loc, got, c.want)
		}
	}
}

// TestMarkFormattedStruct: a struct whose value Delve prints from its
// fields (a time.Time) is left out whole when one of them is.
func TestMarkFormattedStruct(t *testing.T) {
	tm := api.Variable{Name: "t", Kind: reflect.Struct, Type: "time.Time", Value: "1970-01-01T00:00:00Z", Children: []api.Variable{
		{Name: "wall", Kind: reflect.Uint64, Value: "0"}, {Name: "ext", Kind: reflect.Int64, Value: "5"},
	}}
	(&Dropped{Parts: map[int]*Dropped{0: {Whole: true}}}).Mark(&tm)
	if tm.Unreadable != partOptimizedAway || tm.Value != "" || len(tm.Children) != 0 {
		t.Errorf("time.Time with wall left out: %+v", tm)
	}
}

// TestDroppedAlong: what an expression naming a part of a variable reads
// left out, following its fields (its own and promoted ones) and indexes;
// where the part read cannot be told (an index computed at the hit, a
// field that cannot be found), any part left out leaves the expression
// out whole.
func TestDroppedAlong(t *testing.T) {
	word := &godwarf.IntType{BasicType: godwarf.BasicType{CommonType: godwarf.CommonType{ByteSize: 8, Name: "int"}}}
	st := func(name string, fields ...*godwarf.StructField) *godwarf.StructType {
		off := int64(0)
		for _, f := range fields {
			f.ByteOffset = off
			off += f.Type.Size()
		}
		return &godwarf.StructType{CommonType: godwarf.CommonType{Name: name, ByteSize: off}, Field: fields}
	}
	field := func(name string, typ godwarf.Type) *godwarf.StructField {
		return &godwarf.StructField{Name: name, Type: typ}
	}
	embed := func(typ godwarf.Type) *godwarf.StructField {
		return &godwarf.StructField{Name: typ.Common().Name[len("main."):], Type: typ, Embedded: true}
	}
	arr := &godwarf.ArrayType{CommonType: godwarf.CommonType{Name: "[3]int", ByteSize: 24}, Type: word, Count: 3}
	in := st("main.in", field("c", word), field("d", word))
	ptr := &godwarf.PtrType{CommonType: godwarf.CommonType{Name: "*main.in", ByteSize: 8}, Type: in}
	// struct { in; arr [3]int; e int } with in.d and arr[1] left out.
	out := st("main.out", embed(in), field("arr", arr), field("e", word))
	outDropped := &Dropped{Parts: map[int]*Dropped{
		0: {Parts: map[int]*Dropped{1: {Whole: true}}},
		1: {Parts: map[int]*Dropped{1: {Whole: true}}},
	}}
	// struct { *in; e int } with e left out: fields promoted through the
	// pointer are in memory.
	viaPtr := st("main.viaPtr", embed(ptr), field("e", word))
	viaPtr.Field[0].Name = "in"
	viaPtrDropped := &Dropped{Parts: map[int]*Dropped{1: {Whole: true}}}
	whole := &Dropped{Whole: true}
	for _, c := range []struct {
		typ  godwarf.Type
		d    *Dropped
		expr string
		want *Dropped
	}{
		{out, outDropped, "v.e", nil},
		{out, outDropped, "v.d", whole},
		{out, outDropped, "v.c", nil},
		{out, outDropped, "v.in.d", whole},
		{out, outDropped, "v.in", &Dropped{Parts: map[int]*Dropped{1: whole}}},
		{out, outDropped, "v.arr[0]", nil},
		{out, outDropped, "v.arr[1]", whole},
		{out, outDropped, "v.arr[i]", whole},
		{out, outDropped, "v.arr[i+1]", whole},
		{out, nil, "v.arr[i]", nil},
		{out, outDropped, "v.nosuch", whole},
		{viaPtr, viaPtrDropped, "v.c", nil},
		{viaPtr, viaPtrDropped, "v.e", whole},
		{viaPtr, &Dropped{Parts: map[int]*Dropped{0: whole}}, "v.c", whole},
	} {
		e, err := parser.ParseExpr(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		root, path := partPath(e)
		if root == nil || root.Name != "v" {
			t.Fatalf("%s: no path from v", c.expr)
		}
		if got := droppedAlong(c.d, c.typ, path); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s of %s: %+v, want %+v", c.expr, c.typ.Common().Name, got, c.want)
		}
	}
}
