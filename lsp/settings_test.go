package lsp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSettings checks the documented settings against mergeConfig: each
// example is accepted, and a value of the wrong type is refused naming the
// setting, so a setting the server does not read (or reads under another
// name) fails here.
func TestSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings {
		example := s.Example
		switch s.Name {
		case "credentials", "nkey":
			example = file
		case "tls":
			example = map[string]string{"ca": file}
		case "password":
			continue // needs user; its type is checked below
		}
		good, _ := json.Marshal(map[string]any{"riptrace": map[string]any{s.Name: example}})
		if _, err := mergeConfig(DefaultConfig(), good); err != nil {
			t.Errorf("%s: example %s refused: %v", s.Name, good, err)
		}
		wrong := map[string]any{"string": 12, "integer": "twenty", "object": 12, "array": 12}[s.Type]
		bad, _ := json.Marshal(map[string]any{s.Name: wrong})
		_, err := mergeConfig(DefaultConfig(), bad)
		if err == nil || !strings.Contains(err.Error(), "settings: "+s.Name+" must be") {
			t.Errorf("%s: %s gave %v, want an error naming the setting", s.Name, bad, err)
		}
	}
	// The editor's own settings are not the server's.
	if _, err := mergeConfig(DefaultConfig(), []byte(`{"riptrace": {"path": "/usr/bin/riptrace"}}`)); err != nil {
		t.Errorf("riptrace.path refused: %v", err)
	}
	// The tracepoints the server declares capture the group's expressions.
	if cfg, err := mergeConfig(DefaultConfig(), []byte(`{"group": ["req.OrderID", "n"]}`)); err != nil || !slices.Equal(cfg.capture().Exprs, []string{"req.OrderID"}) {
		t.Errorf("with group [req.OrderID n], tracepoints capture the expressions %q (%v), want [req.OrderID]", cfg.capture().Exprs, err)
	}
	// A group name that names nothing, or is not Go, is refused.
	for _, g := range []string{"", "req.("} {
		bad, _ := json.Marshal(map[string]any{"group": []string{g}})
		if _, err := mergeConfig(DefaultConfig(), bad); err == nil || !strings.Contains(err.Error(), "settings: group ") {
			t.Errorf("%s gave %v, want an error naming the setting", bad, err)
		}
	}
}
