package fleet

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAttributeEnum: an attribute with an Enum takes only its strings and
// says which when given another.
func TestAttributeEnum(t *testing.T) {
	a := Attribute{Name: "backend", Type: "string", Description: "The backend.", Example: "auto", Enum: []string{"auto", "ebpf", "delve"}}
	var v string
	if err := a.Decode(json.RawMessage(`"delve"`), &v); err != nil || v != "delve" {
		t.Fatalf("Decode(delve) = %q, %v", v, err)
	}
	err := a.Decode(json.RawMessage(`"gdb"`), &v)
	if err == nil || !strings.Contains(err.Error(), `must be one of "auto", "ebpf" or "delve", got "gdb". The backend.`) {
		t.Errorf("Decode(gdb) = %v, want the values it takes", err)
	}
	if err := a.Decode(json.RawMessage(`3`), &v); err == nil || !strings.Contains(err.Error(), "must be a string") {
		t.Errorf("Decode(3) = %v, want a type error", err)
	}
}

// TestVariableShown: every client words a value not captured alike.
func TestVariableShown(t *testing.T) {
	for _, c := range []struct {
		v    Variable
		want string
	}{
		{Variable{Value: "42"}, "42"},
		{Variable{Value: "<not captured: float64>", Unreadable: "the value is in a floating-point register; trace the next line"}, "<not captured: float64>"},
		{Variable{Unreadable: "optimized away"}, "<optimized away>"},
		{Variable{Unreadable: "the value is in a floating-point register; trace the next line"}, "<not captured>"},
	} {
		if got := c.v.Shown(); got != c.want {
			t.Errorf("%+v.Shown() = %q, want %q", c.v, got, c.want)
		}
	}
}
