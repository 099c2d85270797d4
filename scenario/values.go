package scenario

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// NotCaptured stands for a value the hit does not carry readably: the
// backend could not read it, or a capture bound cut it off. A predicate
// that reads one fails on that hit and says why, rather than comparing a
// placeholder.
type NotCaptured struct{ Why string }

func (n NotCaptured) String() string { return "<not captured: " + n.Why + ">" }

// hitEnv is the variables of a hit as expression values: arguments, then
// locals, by name (a local shadows an argument of the same name, as in Go).
func hitEnv(h *fleet.Hit) map[string]any {
	env := make(map[string]any, len(h.Args)+len(h.Locals)+len(h.Exprs))
	for _, vs := range [][]fleet.Variable{h.Args, h.Locals, h.Exprs} {
		for i := range vs {
			env[vs[i].Name] = value(&vs[i], 0)
		}
	}
	return env
}

// maxValueDepth bounds the conversion, whatever a hit claims to hold.
const maxValueDepth = 32

// value converts a captured variable: structs become maps by field name,
// slices and arrays lists, pointers what they point to, and scalars Go
// values parsed from their rendering by their type.
func value(v *fleet.Variable, depth int) any {
	if v.Unreadable != "" {
		return NotCaptured{v.Unreadable}
	}
	if depth > maxValueDepth {
		return NotCaptured{"nested too deep"}
	}
	t, s := v.Type, v.Value
	if s == "nil" || strings.HasSuffix(s, " nil") {
		return nil
	}
	switch {
	case strings.HasPrefix(t, "*"):
		// A pointer to a struct carries the struct's fields, named; one
		// to another pointer carries that pointer, unnamed. A struct of
		// one field (a protobuf request, once its runtime's fields are
		// left out) is a struct all the same.
		if len(v.Children) == 1 && v.Children[0].Name == "" {
			return value(&v.Children[0], depth+1)
		}
		if len(v.Children) > 0 {
			return fields(v.Children, depth)
		}
		return NotCaptured{fmt.Sprintf("the pointer %s was not followed (raise the capture's maxStructDepth)", s)}
	case strings.HasPrefix(t, "[]") || strings.HasPrefix(t, "["):
		list := make([]any, 0, len(v.Children))
		for i := range v.Children {
			list = append(list, value(&v.Children[i], depth+1))
		}
		if len(list) == 0 && s != "[]" && !strings.HasSuffix(s, "len: 0, cap: 0, []") && !strings.Contains(s, "len: 0") {
			return NotCaptured{"the elements were not loaded (raise the capture's maxArrayValues or maxStructDepth)"}
		}
		return list
	case strings.HasPrefix(t, "map["):
		return NotCaptured{"maps are shown, not compared: capture an expression such as m[\"key\"]"}
	case len(v.Children) > 0:
		return fields(v.Children, depth)
	}
	return scalar(t, s)
}

func fields(children []fleet.Variable, depth int) map[string]any {
	m := make(map[string]any, len(children))
	for i := range children {
		m[children[i].Name] = value(&children[i], depth+1)
	}
	return m
}

// scalar parses a scalar's rendering by its type.
func scalar(t, s string) any {
	base := t
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		base = base[i+1:]
	}
	switch {
	case base == "bool" || s == "true" || s == "false":
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	case strings.HasPrefix(base, "int") || strings.HasPrefix(base, "uint") || base == "uintptr":
		if n, err := strconv.ParseInt(firstField(s), 0, 64); err == nil {
			return n
		}
		if n, err := strconv.ParseUint(firstField(s), 0, 64); err == nil {
			return n
		}
	case strings.HasPrefix(base, "float"):
		if f, err := strconv.ParseFloat(firstField(s), 64); err == nil {
			return f
		}
	}
	if strings.HasPrefix(s, `"`) {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
		return NotCaptured{fmt.Sprintf("the string was cut off at the capture's maxStringLen: %s", s)}
	}
	// A named type's rendering: a number or a quoted string, or else
	// text as the backend wrote it.
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f
	}
	return s
}

// firstField drops what a backend writes after a number ("65 'A'").
func firstField(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 {
		return s[:i]
	}
	return s
}

// resolve follows a path such as req.Amount through env, saying which part
// is missing or not captured.
func resolve(env map[string]any, path []string) (any, error) {
	var cur any = env
	for i, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			if nc, ok := cur.(NotCaptured); ok {
				return nil, fmt.Errorf("%s was not captured: %s", strings.Join(path[:i], "."), nc.Why)
			}
			return nil, fmt.Errorf("%s is %s, which has no field %s", strings.Join(path[:i], "."), show(cur), p)
		}
		v, ok := m[p]
		if !ok {
			if i == 0 {
				return nil, fmt.Errorf("%s was not captured: the hit holds %s", p, strings.Join(sortedNames(m), ", "))
			}
			return nil, fmt.Errorf("%s was not captured: %s holds %s", strings.Join(path[:i+1], "."), strings.Join(path[:i], "."), strings.Join(sortedNames(m), ", "))
		}
		cur = v
	}
	if nc, ok := cur.(NotCaptured); ok {
		return nil, fmt.Errorf("%s was not captured: %s", strings.Join(path, "."), nc.Why)
	}
	return cur, nil
}

func sortedNames(m map[string]any) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"no variables"}
	}
	return names
}

// show renders an expression value for a report.
func show(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		return strconv.Quote(v)
	case map[string]any:
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range sortedNames(v) {
			if i > 0 {
				b.WriteString(", ")
			}
			if i == 6 {
				fmt.Fprintf(&b, "… %d more", len(v)-6)
				break
			}
			b.WriteString(k + ": " + show(v[k]))
		}
		b.WriteByte('}')
		return b.String()
	}
	return clip(fmt.Sprint(v), 120)
}
