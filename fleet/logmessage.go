package fleet

import (
	"strconv"
	"strings"
)

// RenderLogMessage writes a log message from its segments and the values of
// its expressions, in order, the way fmt's %v would: strings without quotes.
// A value that could not be read says why in its place. The agent renders
// it from values it has redacted, so a secret inside a value (a struct
// field, a map entry) never reaches the message.
func RenderLogMessage(segs []LogSegment, vals []Variable) string {
	var b strings.Builder
	for _, seg := range segs {
		if seg.Expr == "" {
			b.WriteString(seg.Text)
			continue
		}
		if len(vals) == 0 {
			b.WriteString("<" + seg.Expr + ": not captured>")
			continue
		}
		b.WriteString(logValue(vals[0]))
		vals = vals[1:]
	}
	return b.String()
}

func logValue(v Variable) string {
	if v.Unreadable != "" {
		if v.Value == "<optimized away>" {
			return "<" + v.Name + ": optimized away>"
		}
		return "<" + v.Name + ": " + v.Unreadable + ">"
	}
	if strings.HasPrefix(v.Type, "string") && len(v.Value) >= 2 && v.Value[0] == '"' {
		if s, err := strconv.Unquote(v.Value); err == nil {
			return s
		}
	}
	return v.Value
}
