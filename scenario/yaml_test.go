package scenario_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/scenario"
)

const base = `services:
  - name: api
    command: ./api
tracepoints:
  - {name: hit, service: api, at: main.go:3}
`

// TestParseErrors checks that each mistake names its line, column and key,
// and says what to write instead.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line, col  int
		want       string
	}{
		{"unknown key", base + "expect:\n  - {hits: hit, cuont: 1}\n", 7, 17, `expect[0]: unknown key "cuont": did you mean count?`},
		{"unknown top key", "servces: []\n", 1, 1, `did you mean services?`},
		{"wrong kind", base + "steps: {http: x}\n", 6, 8, "want a list"},
		{"bad duration", base + "settle: soon\n", 6, 9, `"soon" is not a duration: write one such as 200ms`},
		{"set twice", "name: a\nname: b\n", 2, 1, "set twice (first at line 1, column 1)"},
		{"bad count", base + "expect:\n  - {hits: hit, count: \"about 4\"}\n", 7, 24, `count "about 4": write an operator and a number`},
		{"unknown tracepoint", base + "expect:\n  - never: miss\n", 7, 12, `"miss" is not a tracepoint of this scenario: the tracepoints are hit`},
		{"bad where", base + "expect:\n  - {hits: hit, where: \"a >\"}\n", 7, 24, `"a >" is not an expression (unexpected token EOF (1:3)): write one in expr's syntax, such as req.Amount > 0`},
		{"two kinds of step", base + "steps:\n  - {sh: \"true\", until: {hits: hit, count: 1}}\n", 7, 5, "give exactly one of http, grpc, sh, until and parallel"},
		{"no service", "tracepoints:\n  - {name: t, at: a.go:1}\n", 2, 5, "names no service"},
		{"bad condition", base[:len(base)-2] + ", condition: \"x ==\"}\n", 5, 5, "is not a Go expression: 1:5: expected operand, found 'EOF': write one in Go's syntax, such as req.Amount > 0"},
		{"bad yaml", "name: [\n", 1, 1, "not valid YAML: did not find expected node content: check the indentation"},
		{"no services", "tracepoints:\n  - {name: t, service: api, at: a.go:1}\n", 2, 24, `"api" is not a service of this scenario, which starts none: list it under services`},
		{"bool as text", base + "steps:\n  - sh: true\n", 7, 9, "put it in quotes"},
		{"alias", "name: &n a\nsettle: *n\n", 2, 9, "aliases"},
		{"second document", "name: a\n---\nname: b\n", 2, 1, "a second YAML document"},
		{"certificate without key", "fleet:\n  nats: nats://x\n  tls: {cert: c.pem}\n", 3, 15, "fleet.tls.cert: set without fleet.tls.key"},
		{"unknown fleet key", "fleet: {nats: nats://x, tokn: t}\n", 1, 25, `unknown key "tokn": did you mean token?`},
		{"bad ready regexp", "services:\n  - {name: a, command: x, ready: {log: \"(\"}}\n", 2, 40, "not a Go regular expression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scenario.Parse([]byte(tc.yaml), "s.yaml")
			var pe *scenario.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("want a *ParseError, got %v", err)
			}
			if pe.Line != tc.line || pe.Col != tc.col || !strings.Contains(pe.Error(), tc.want) || !strings.HasPrefix(pe.Error(), "s.yaml:") {
				t.Errorf("got %v (at %d:%d)\nwant at %d:%d, saying %q", err, pe.Line, pe.Col, tc.line, tc.col, tc.want)
			}
		})
	}
}

// TestExamplesParse checks that every example scenario is valid.
func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "scenarios", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no example scenarios")
	}
	for _, f := range files {
		if _, err := scenario.Load(f); err != nil {
			t.Error(err)
		}
	}
}

// FuzzParse checks that no input panics the parser, and that every error
// is a *ParseError with a position inside the file.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "scenarios", "*.yaml"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(base + "expect:\n  - {order: [hit, hit], by: {'*': x.y}}\n"))
	f.Add([]byte("steps:\n  - parallel:\n    - {repeat: -1, sh: x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := scenario.Parse(data, "f.yaml")
		if err == nil {
			return
		}
		var pe *scenario.ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("not a *ParseError: %v", err)
		}
		if lines := strings.Count(string(data), "\n") + 1; pe.Line < 0 || pe.Line > lines+1 {
			t.Fatalf("line %d outside the file's %d lines: %v", pe.Line, lines, err)
		}
	})
}

var update = flag.Bool("update", false, "rewrite docs/scenario.schema.json")

// TestSchema checks that the published JSON Schema is the one the structs
// make (go test ./scenario -run TestSchema -update rewrites it).
func TestSchema(t *testing.T) {
	path := filepath.Join("..", "docs", "scenario.schema.json")
	got := scenario.JSONSchema()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != string(got) {
		t.Errorf("%s is not the schema the structs make (%v): run go test ./scenario -run TestSchema -update", path, err)
	}
}
