package agent

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/riptrace/riptrace/fleet"
)

// Redacted is what a redacted value shows.
const Redacted = "<redacted>"

// DefaultRedactNames matches the names of variables, fields and map keys
// whose values never leave the host: passwords, secrets, tokens, API keys
// (X-Api-Key too), authorization headers, cookies, private and access keys,
// and credentials.
const DefaultRedactNames = `(?i)(passw(or)?d|passwd|secret|token|api[-_]?key|authorization|cookie|private[-_]?key|access[-_]?key|credential)`

// DefaultRedactValues matches values that are secrets whatever their name,
// anywhere in the value: bearer and basic credentials (after an
// Authorization header too), JSON web tokens (session=eyJ… as well), the
// keys of common services by their prefix, and PEM private keys; and the
// start of any of these where a string was cut short (Delve ends it with
// "...+N more").
const DefaultRedactValues = `(?i)(\bbearer\s*|\bbasic\s+|eyJ|\b(sk|pk|rk)[-_]|\bsk-|\bAKIA|\bgh[pousr]_|\bxox[abpr]-)[\w\-.~+/=]*\.\.\.\+\d+ more|\bbearer\s+[\w\-.~+/]{8,}|(^"?|authorization"?:?\s*)basic\s+[a-z0-9+/]{8,}|eyJ[\w-]+\.[\w-]+\.[\w-]*|\b(sk|pk|rk)[-_](live|test)[-_]\w+|\bsk-[\w-]{20,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_\w{20,}|\bxox[abpr]-[\w-]+|-----BEGIN [A-Z ]*PRIVATE KEY-----`

// Redactor removes secrets from hits at the agent, before anything leaves the
// host. The zero value redacts nothing.
type Redactor struct {
	Names  *regexp.Regexp // a variable or field name matching it is redacted
	Values *regexp.Regexp // a value matching it is redacted

	// valueStarts are the bytes a match of valuesFrom can start with, as
	// NewRedactor found them (matchStarts): a value holding none of them,
	// most numbers, is not matched against it. Matching every value of
	// every hit was a sixth of what the agent spent per hit.
	valueStarts *[256]bool
	valuesFrom  *regexp.Regexp
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
		if re, err := syntax.Parse(values, syntax.Perl); err == nil {
			r.valueStarts, r.valuesFrom = matchStarts(re.Simplify()), r.Values
		}
	}
	return r, nil
}

// matchStarts returns the bytes of a string that a match of re can start
// with, nil if any byte can, or if re matches the empty string: then every
// string matches.
func matchStarts(re *syntax.Regexp) *[256]bool {
	var set [256]bool
	if nullable, ok := addStarts(re, &set); !ok || nullable {
		return nil
	}
	return &set
}

// addStarts adds to set the bytes a non-empty match of re can start with,
// and reports whether re matches the empty string (then what follows it
// can start a match too); ok is false if it cannot tell. A rune past ASCII
// may start with any byte from 0x80, and so may invalid UTF-8, which
// matches as U+FFFD.
func addStarts(re *syntax.Regexp, set *[256]bool) (nullable, ok bool) {
	addRange := func(lo, hi rune) {
		for r := lo; r <= min(hi, utf8.RuneSelf-1); r++ {
			set[r] = true
		}
		if hi >= utf8.RuneSelf {
			for b := utf8.RuneSelf; b < 256; b++ {
				set[b] = true
			}
		}
	}
	switch re.Op {
	case syntax.OpNoMatch:
		return false, true
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true, true
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return true, true
		}
		r0 := re.Rune[0]
		addRange(r0, r0)
		if re.Flags&syntax.FoldCase != 0 {
			for f := unicode.SimpleFold(r0); f != r0; f = unicode.SimpleFold(f) {
				addRange(f, f)
			}
		}
		return false, true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			addRange(re.Rune[i], re.Rune[i+1])
		}
		return false, true
	case syntax.OpCapture:
		return addStarts(re.Sub[0], set)
	case syntax.OpStar, syntax.OpQuest:
		_, ok := addStarts(re.Sub[0], set)
		return true, ok
	case syntax.OpPlus:
		return addStarts(re.Sub[0], set)
	case syntax.OpRepeat:
		nullable, ok := addStarts(re.Sub[0], set)
		return nullable || re.Min == 0, ok
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			nullable, ok := addStarts(sub, set)
			if !ok || !nullable {
				return false, ok
			}
		}
		return true, true
	case syntax.OpAlternate:
		empty := false
		for _, sub := range re.Sub {
			nullable, ok := addStarts(sub, set)
			if !ok {
				return false, false
			}
			empty = empty || nullable
		}
		return empty, true
	}
	return false, false // any character
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
		if r.secretName(strings.Trim(v.Name, "[]\"")) {
			redact(v)
			continue
		}
		if r.secretValue(v.Name) {
			// A map keyed by secrets (sessions by token) shows them as
			// its entries' names.
			v.Name = "[" + Redacted + "]"
			redact(v)
			continue
		}
		if len(v.Children) == 0 {
			// A composite cut off below the tree's depth still shows its
			// fields in its one-line value.
			if r.secretValue(v.Value) || r.namesInside(v.Value) {
				redact(v)
			}
			continue
		}
		r.vars(v.Children)
		// A composite's one-line rendering repeats its fields' values.
		if r.anyRedacted(v.Children) || r.secretValue(v.Value) || r.namesInside(v.Value) {
			v.Value = summarize(v)
		}
	}
}

func redact(v *fleet.Variable) {
	v.Value, v.Children, v.Unreadable = Redacted, nil, ""
}

func (r *Redactor) secretName(name string) bool {
	return r.Names != nil && r.Names.MatchString(name)
}

func (r *Redactor) secretValue(value string) bool {
	if r.Values == nil {
		return false
	}
	if r.valueStarts != nil && r.valuesFrom == r.Values {
		starts := false
		for i := 0; i < len(value) && !starts; i++ {
			starts = r.valueStarts[value[i]]
		}
		if !starts {
			return false
		}
	}
	return r.Values.MatchString(value)
}

// fieldRe finds the field names and map keys in a composite's one-line
// rendering: main.T {Name: …, …} or map[…]… ["key": …, …].
var fieldRe = regexp.MustCompile(`(?:^|[{\[,]\s*)"?([A-Za-z_][\w-]*)"?: `)

// namesInside reports whether value, the rendering of a composite (not a
// string), shows a field or key to redact.
func (r *Redactor) namesInside(value string) bool {
	if r.Names == nil || strings.HasPrefix(value, `"`) || !strings.Contains(value, ": ") {
		return false
	}
	for _, m := range fieldRe.FindAllStringSubmatch(value, -1) {
		if r.Names.MatchString(m[1]) {
			return true
		}
	}
	return false
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

// Check refuses spec if its condition, an expression or a log message reads
// a name this redactor hides, or makes a raw read of memory or registers,
// with an error that carries fleet.CodeRedacted or fleet.CodeUnsafeExpr.
// The agent checks every spec it is given, whatever the client checked.
func (r *Redactor) Check(spec *fleet.Spec) error {
	var secret func(string) bool
	if r != nil && r.Names != nil {
		secret = r.Names.MatchString
	}
	return spec.CheckReads(secret)
}
