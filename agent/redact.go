package agent

import (
	"fmt"
	"go/ast"
	"go/parser"
	"regexp"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// Redacted is what a redacted value shows.
const Redacted = "<redacted>"

// DefaultRedactNames matches the names of variables and fields whose values
// never leave the host: passwords, secrets, tokens, API keys, authorization
// headers, cookies and private keys.
const DefaultRedactNames = `(?i)(passw(or)?d|passwd|secret|token|api_?key|authorization|cookie|private_?key|credential)`

// DefaultRedactValues matches values that are secrets whatever their name:
// bearer credentials and JSON web tokens.
const DefaultRedactValues = `(?i)^"?(bearer\s|basic\s)|^"?eyJ[\w-]+\.[\w-]+\.[\w-]+"?$`

// Redactor removes secrets from hits at the agent, before anything leaves the
// host. The zero value redacts nothing.
type Redactor struct {
	Names  *regexp.Regexp // a variable or field name matching it is redacted
	Values *regexp.Regexp // a value matching it is redacted
}

// NewRedactor compiles the name and value patterns; an empty pattern
// matches nothing.
func NewRedactor(names, values string) (*Redactor, error) {
	r := &Redactor{}
	var err error
	if names != "" {
		if r.Names, err = regexp.Compile(names); err != nil {
			return nil, fmt.Errorf("compiling the redaction name pattern %q: %w", names, err)
		}
	}
	if values != "" {
		if r.Values, err = regexp.Compile(values); err != nil {
			return nil, fmt.Errorf("compiling the redaction value pattern %q: %w", values, err)
		}
	}
	return r, nil
}

// DefaultRedactor redacts DefaultRedactNames and DefaultRedactValues.
func DefaultRedactor() *Redactor {
	r, err := NewRedactor(DefaultRedactNames, DefaultRedactValues)
	if err != nil {
		panic(err) // the defaults compile
	}
	return r
}

func (r *Redactor) enabled() bool { return r != nil && (r.Names != nil || r.Values != nil) }

// Hit redacts h's values in place.
func (r *Redactor) Hit(h *fleet.Hit) {
	if !r.enabled() {
		return
	}
	r.vars(h.Args)
	r.vars(h.Locals)
	r.vars(h.Exprs)
}

func (r *Redactor) vars(vs []fleet.Variable) {
	for i := range vs {
		v := &vs[i]
		name := strings.Trim(v.Name, "[]\"")
		if (r.Names != nil && r.Names.MatchString(name)) || (r.Values != nil && r.Values.MatchString(v.Value)) {
			v.Value, v.Children, v.Unreadable = Redacted, nil, ""
			continue
		}
		r.vars(v.Children)
		// A composite's one-line rendering repeats its fields' values.
		if r.anyRedacted(v.Children) {
			v.Value = summarize(v)
		}
	}
}

func (r *Redactor) anyRedacted(vs []fleet.Variable) bool {
	for _, v := range vs {
		if v.Value == Redacted || r.anyRedacted(v.Children) {
			return true
		}
	}
	return false
}

// summarize rebuilds a composite's one-line value from its (redacted)
// children.
func summarize(v *fleet.Variable) string {
	parts := make([]string, len(v.Children))
	for i, c := range v.Children {
		parts[i] = c.Name + ": " + c.Value
	}
	return v.Type + " {" + strings.Join(parts, ", ") + "}"
}

// Spec returns spec with every log-message expression and captured
// expression that names a redacted identifier replaced, so the backend never
// renders it.
func (r *Redactor) Spec(spec fleet.Spec) fleet.Spec {
	if !r.enabled() || r.Names == nil {
		return spec
	}
	if segs, err := fleet.ParseLogMessage(spec.LogMessage); err == nil {
		var b strings.Builder
		changed := false
		for _, s := range segs {
			switch {
			case s.Expr == "":
				b.WriteString(strings.NewReplacer("{", "{{", "}", "}}").Replace(s.Text))
			case r.names(s.Expr):
				b.WriteString(Redacted)
				changed = true
			default:
				b.WriteString("{" + s.Expr + "}")
			}
		}
		if changed {
			spec.LogMessage = b.String()
		}
	}
	var exprs []string
	for _, e := range spec.Capture.Exprs {
		if !r.names(e) {
			exprs = append(exprs, e)
		}
	}
	spec.Capture.Exprs = exprs
	return spec
}

// names reports whether expression e mentions an identifier to redact.
func (r *Redactor) names(e string) bool {
	x, err := parser.ParseExpr(e)
	if err != nil {
		return r.Names.MatchString(e)
	}
	found := false
	ast.Inspect(x, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok && r.Names.MatchString(id.Name) {
			found = true
		}
		return !found
	})
	return found
}
