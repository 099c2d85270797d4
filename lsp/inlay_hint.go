package lsp

import (
	"context"
	"go/scanner"
	"go/token"
	"strings"

	"go.lsp.dev/protocol"

	"github.com/riptrace/riptrace/fleet"
)

// Bounds of inlay hints, in runes.
const (
	maxValueLen = 24 // one value after a variable's name
	maxLineLen  = 80 // all values at the end of a line
)

// InlayHint shows the last values of each traced line in range: after a
// captured variable's name where it appears on the line, and the others at
// the end of the line.
func (s *server) InlayHint(ctx context.Context, params *protocol.InlayHintParams) ([]protocol.InlayHint, error) {
	return inlayHints(s.view(params.TextDocument.URI), params.Range), nil
}

// inlayHints renders the hints of v's traced lines within r, sorted by
// position.
func inlayHints(v fileView, r protocol.Range) []protocol.InlayHint {
	var hints []protocol.InlayHint
	for _, t := range v.Traced {
		if t.Cur < int(r.Start.Line) || t.Cur > int(r.End.Line) || t.Cur >= len(v.Lines) {
			continue
		}
		line := v.Lines[t.Cur]
		var rest []string
		for _, val := range t.Values {
			text := truncate(valueText(&val), maxValueLen)
			if off, ok := identAt(line, val.Name); ok {
				hints = append(hints, protocol.InlayHint{
					Position: protocol.Position{Line: uint32(t.Cur), Character: uint32(utf16Col(line, off))},
					Label:    protocol.String("=" + text),
					Kind:     protocol.InlayHintKindType,
				})
				continue
			}
			rest = append(rest, val.Name+"="+text)
		}
		if len(rest) > 0 {
			padding := true
			hints = append(hints, protocol.InlayHint{
				Position:    protocol.Position{Line: uint32(t.Cur), Character: uint32(utf16Len(line))},
				Label:       protocol.String(truncate(strings.Join(rest, " "), maxLineLen)),
				PaddingLeft: &padding,
			})
		}
	}
	return hints
}

// valueText is a captured value on one line, a value not captured worded
// as the debug console words it (fleet.Variable.Shown).
func valueText(v *fleet.Variable) string {
	return strings.Join(strings.Fields(v.Shown()), " ")
}

// identAt returns the byte offset just after the first occurrence of name
// as a whole operand in the code of line: not inside a string or rune
// literal or a comment, not a field or method selected with a dot, and not
// the start of a longer expression (o.Customer, o[i], o(x)), where a hint
// would split the code it annotates; such a value goes at the end of the
// line. The line is scanned alone, so a line inside a raw string or block
// comment that spans lines is read as code (the hint then goes where the
// name appears).
func identAt(line, name string) (int, bool) {
	if name == "" {
		return 0, false
	}
	fset := token.NewFileSet()
	file := fset.AddFile("", fset.Base(), len(line))
	var sc scanner.Scanner
	sc.Init(file, []byte(line), func(token.Position, string) {}, 0)
	prev := token.ILLEGAL
	found := -1 // the end of the name's last token, while its successor is unknown
	for {
		pos, tok, lit := sc.Scan()
		if found >= 0 {
			switch tok {
			case token.PERIOD, token.LBRACK, token.LPAREN:
				// Part of a longer expression: look further on.
				found = -1
			default:
				return found, true
			}
		}
		if tok == token.EOF {
			return 0, false
		}
		if tok == token.IDENT && lit == name && prev != token.PERIOD {
			found = file.Offset(pos) + len(lit)
		}
		prev = tok
	}
}

func isIdent(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
