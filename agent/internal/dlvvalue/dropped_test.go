package dlvvalue

import (
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
