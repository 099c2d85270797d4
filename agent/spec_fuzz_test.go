package agent_test

import (
	"go/ast"
	"go/parser"
	"testing"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// FuzzRedactCheck: a spec the agent accepts reads no redacted identifier
// and nothing through uintptr or unsafe, in its condition, expressions or
// log message; and the check never panics.
func FuzzRedactCheck(f *testing.F) {
	f.Add("user {user} pass {password}", "req.Token", "x")
	f.Add("{{literal}} {a.secret} }}", "apiKey + 1", "token == \"\"")
	f.Add("{ f(\"}\") }", "a[", "")
	f.Add("{*(*string)(uintptr(cfg)+16)}", "hdr[\"X-Api-Key\"]", "password[0] == 104")
	f.Fuzz(func(t *testing.T, logMsg, expr, cond string) {
		spec := fleet.Spec{ID: "tp", Location: fleet.Location{Path: "a.go", Line: 1}, LogMessage: logMsg, Condition: cond, Capture: fleet.Capture{Exprs: []string{expr}}}
		if spec.Validate() != nil {
			return
		}
		r := agent.DefaultRedactor()
		if r.Check(&spec) != nil {
			return
		}
		segs, _ := fleet.ParseLogMessage(spec.LogMessage)
		exprs := append([]string{spec.Condition}, spec.Capture.Exprs...)
		for _, s := range segs {
			exprs = append(exprs, s.Expr)
		}
		for _, e := range exprs {
			x, err := parser.ParseExpr(e)
			if err != nil {
				continue // an empty condition, or text
			}
			ast.Inspect(x, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok && (r.Names.MatchString(id.Name) || id.Name == "uintptr" || id.Name == "unsafe") {
					t.Fatalf("expression %q, naming %s, was accepted", e, id.Name)
				}
				return true
			})
		}
	})
}

// FuzzResolveFile: a location from the wire picks one of the program's
// files or says why not.
func FuzzResolveFile(f *testing.F) {
	sources := []string{
		"/src/orders/internal/pay/charge.go", "/src/orders/cmd/orders/main.go", "/root/go/pkg/mod/github.com/nats-io/nats.go@v1.55.0/kv.go",
		"github.com/acme/orders/internal/pay/charge.go", "/usr/lib/go/src/runtime/proc.go", "main.go",
	}
	f.Add("", "internal/pay/charge.go")
	f.Add("github.com/nats-io/nats.go", "kv.go")
	f.Add("", "../../main.go")
	f.Add("x", "")
	f.Fuzz(func(t *testing.T, module, path string) {
		file, err := agent.ResolveFile(sources, fleet.Location{Module: module, Path: path, Line: 1})
		if err != nil {
			if e := fleet.AsError(err); e.Code != fleet.CodeNoFile || e.Message == "" {
				t.Fatalf("ResolveFile(%q, %q): %#v, want %s", module, path, err, fleet.CodeNoFile)
			}
			return
		}
		for _, s := range sources {
			if s == file {
				return
			}
		}
		t.Fatalf("ResolveFile(%q, %q) = %q, not a file of the program", module, path, file)
	})
}
