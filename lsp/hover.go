package lsp

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.lsp.dev/protocol"

	"github.com/riptrace/riptrace/fleet"
)

// maxHoverPerHost bounds the hits a hover lists per host.
const maxHoverPerHost = 5

// Hover shows the recent hits of a traced line per host, as Markdown; over
// a captured variable's name, the recent values of that variable.
func (s *server) Hover(ctx context.Context, params *protocol.HoverParams) (*protocol.Hover, error) {
	v := s.view(params.TextDocument.URI)
	cur := int(params.Position.Line)
	t, ok := v.at(cur)
	if !ok || cur >= len(v.Lines) {
		return nil, nil
	}
	line := v.Lines[cur]
	variable := wordAt(line, byteOffset(line, int(params.Position.Character)))
	if !captured(t.Values, variable) {
		variable = ""
	}
	return &protocol.Hover{Contents: &protocol.MarkupContent{Kind: protocol.MarkupKindMarkdown, Value: hoverMarkdown(&t.LineHits, variable, s.opts.Now())}}, nil
}

// hoverMarkdown renders l's recent hits grouped by host (hosts sorted,
// latest in the timeline first), each with its place in the timeline, when
// it ran on the server's clock, its request if it names one, and its
// values, or only variable's if set.
// A hit out of place or whose order is in doubt says so.
func hoverMarkdown(l *LineHits, variable string, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**", lensTitle(l, now))
	if variable != "" {
		fmt.Fprintf(&b, " — `%s`", variable)
	}
	b.WriteString("\n\n")
	for _, hc := range l.Hosts {
		fmt.Fprintf(&b, "**%s** · %s\n\n", hc.Host, plural(hc.Count, "hit"))
		n := 0
		for i := range l.Recent {
			h := &l.Recent[i]
			if h.Host != hc.Host {
				continue
			}
			if n++; n > maxHoverPerHost {
				break
			}
			fmt.Fprintf(&b, "- `#%d` %s %s[%d] g%d", h.Order, h.CoordinatedTime.UTC().Format("15:04:05.000"), h.Process.Exe, h.Pid, h.Goroutine)
			if h.Group != "" {
				fmt.Fprintf(&b, " · request `%s`", strings.ReplaceAll(h.Group, "`", "'"))
			}
			switch {
			case h.Late:
				b.WriteString(" · late")
			case h.Uncertain:
				b.WriteString(" · order uncertain")
			}
			if vals := hitValues(h, variable); vals != "" {
				fmt.Fprintf(&b, ": `%s`", strings.ReplaceAll(vals, "`", "'"))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// hitValues renders a hit's values (only variable's if set) on one line.
func hitValues(h *fleet.Placed, variable string) string {
	var parts []string
	for _, vars := range [][]fleet.Variable{h.Args, h.Locals, h.Exprs} {
		for i := range vars {
			if variable != "" && vars[i].Name != variable {
				continue
			}
			parts = append(parts, vars[i].Name+"="+truncate(valueText(&vars[i]), 2*maxValueLen))
		}
	}
	return truncate(strings.Join(parts, " "), 3*maxLineLen)
}

// wordAt returns the identifier around byte offset off of line.
func wordAt(line string, off int) string {
	start, end := off, off
	for start > 0 && isIdent(line[start-1]) {
		start--
	}
	for end < len(line) && isIdent(line[end]) {
		end++
	}
	return line[start:end]
}

func captured(vals []fleet.Variable, name string) bool {
	for i := range vals {
		if name != "" && vals[i].Name == name {
			return true
		}
	}
	return false
}
