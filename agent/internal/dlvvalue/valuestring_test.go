package dlvvalue

import (
	"reflect"
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
