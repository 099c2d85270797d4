package agent_test

import (
	"go/ast"
	"go/parser"
	"testing"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// FuzzRedactSpec: what the agent hands its backend after redaction still
// validates, and names no redacted identifier in its log message or
// expressions.
func FuzzRedactSpec(f *testing.F) {
	f.Add("user {user} pass {password}", "req.Token", "x")
	f.Add("{{literal}} {a.secret} }}", "apiKey + 1", "token == \"\"")
	f.Add("{ f(\"}\") }", "a[", "")
	f.Fuzz(func(t *testing.T, logMsg, expr, cond string) {
		spec := fleet.Spec{ID: "tp", Location: fleet.Location{Path: "a.go", Line: 1}, LogMessage: logMsg, Condition: cond, Capture: fleet.Capture{Exprs: []string{expr}}}
		if spec.Validate() != nil {
			return
		}
		r := agent.DefaultRedactor()
		out := r.Spec(spec)
		if err := out.Validate(); err != nil {
			t.Fatalf("the redacted spec does not validate: %v\nlog %q → %q", err, logMsg, out.LogMessage)
		}
		segs, _ := fleet.ParseLogMessage(out.LogMessage)
		exprs := out.Capture.Exprs
		for _, s := range segs {
			exprs = append(exprs, s.Expr)
		}
		for _, e := range exprs {
			x, err := parser.ParseExpr(e)
			if err != nil {
				continue // only text segments, which are not evaluated
			}
			ast.Inspect(x, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok && r.Names.MatchString(id.Name) {
					t.Fatalf("expression %q, naming %s, survives redaction (log %q → %q)", e, id.Name, logMsg, out.LogMessage)
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
