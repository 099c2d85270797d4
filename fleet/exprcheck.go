package fleet

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"regexp"
	"strconv"
	"strings"
)

// CheckReads refuses s if its condition, one of its expressions or an
// interpolation of its log message makes a raw read or, when secret
// is set, a name secret reports as redacted (see CheckExpr). Clients call it
// with no secret at declare time; the agent calls it with its own redaction
// names, which only it knows.
func (s *Spec) CheckReads(secret func(name string) bool) error {
	if s.Condition != "" {
		if err := CheckExpr(s.ID, "condition", s.Condition, secret); err != nil {
			return err
		}
	}
	for _, e := range s.Capture.Exprs {
		if err := CheckExpr(s.ID, "expression", e, secret); err != nil {
			return err
		}
	}
	segs, err := ParseLogMessage(s.LogMessage)
	if err != nil {
		return err
	}
	for _, seg := range segs {
		if seg.Expr == "" {
			continue
		}
		if err := CheckExpr(s.ID, "log message", seg.Expr, secret); err != nil {
			return err
		}
	}
	return nil
}

// CheckExpr refuses expression e, the what ("condition", "expression", "log
// message") of tracepoint id, if it makes a raw read: of memory by address,
// through uintptr, package unsafe or a conversion to a pointer type, or of
// a CPU register. Such a read reaches any field, whatever its name, so
// redaction could not hold.
// With secret set, it also refuses e if it names a variable, field or map
// key that secret reports as redacted, in whatever position: a condition on
// a secret (password[0] == 104) tells its value a bit at a time, even though
// the value itself never shows.
//
// It is the one decision for conditions, expressions and log messages, on
// every backend; the error carries CodeUnsafeExpr or CodeRedacted.
func CheckExpr(id, what, e string, secret func(name string) bool) error {
	x, err := parser.ParseExpr(e)
	if err != nil {
		return Errorf(CodeBadCondition, "tracepoint %s: %s %q is not a Go expression: %v", id, what, e, err)
	}
	var refused error
	ast.Inspect(x, func(n ast.Node) bool {
		if refused != nil {
			return false
		}
		unsafeRead, name := "", ""
		switch n := n.(type) {
		case *ast.Ident:
			switch {
			case n.Name == "uintptr":
				unsafeRead = "converts through uintptr"
			case n.Name == "unsafe":
				unsafeRead = "uses package unsafe"
			case isRegister(n.Name):
				unsafeRead = "reads CPU register " + n.Name
			default:
				name = n.Name
			}
		case *ast.CallExpr:
			if star, ok := ast.Unparen(n.Fun).(*ast.StarExpr); ok {
				unsafeRead = "converts to the pointer type " + types.ExprString(star)
			}
		case *ast.IndexExpr:
			name, _ = constString(n.Index) // a map key
		}
		switch {
		case unsafeRead != "":
			refused = Errorf(CodeUnsafeExpr, "tracepoint %s: %s %q %s, a raw read that redaction cannot follow. Name the variable or field to read instead.", id, what, e, unsafeRead)
		case name != "" && secret != nil && secret(name):
			refused = Errorf(CodeRedacted, "tracepoint %s: %s %q reads %s, which this host redacts. Conditions, expressions and log messages may not read redacted names: read a value that is not secret.", id, what, e, name)
		}
		return refused == nil
	})
	return refused
}

// registerRe matches the names Delve reads as CPU registers on amd64 and
// arm64 (after any leading underscores), when no variable has the name.
var registerRe = regexp.MustCompile(`^(R[ABCD]X|R[SD]I|R[BS]P|RIP|R([89]|1[0-5])|RFLAGS|EFLAGS|[XYZ]MM[0-9]+|ST[0-7]|MM[0-7]|[CDEFGS]S|TR|LDTR|MXCSR|FCW|FSW|X[0-9]+|V[0-9]+|SP|PC|LR)$`)

func isRegister(name string) bool {
	return registerRe.MatchString(strings.TrimLeft(name, "_"))
}

// constString returns the value of x if it is a constant string: a literal,
// or literals joined by +.
func constString(x ast.Expr) (string, bool) {
	switch x := ast.Unparen(x).(type) {
	case *ast.BasicLit:
		if x.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(x.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if x.Op != token.ADD {
			return "", false
		}
		l, ok := constString(x.X)
		if !ok {
			return "", false
		}
		r, ok := constString(x.Y)
		return l + r, ok
	}
	return "", false
}
