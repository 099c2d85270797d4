package lsp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"
)

// CodeLens puts `● 128 hits · 3 hosts · last 2s ago` above each traced
// line; the lens command shows the line's recent hits.
func (s *server) CodeLens(ctx context.Context, params *protocol.CodeLensParams) ([]protocol.CodeLens, error) {
	u := params.TextDocument.URI
	lenses := codeLenses(u, s.view(u), s.opts.Now())
	if s.log.Enabled(ctx, slog.LevelDebug) {
		titles := make([]string, len(lenses))
		for i, l := range lenses {
			titles[i] = l.Command.Title
		}
		s.log.Debug("textDocument/codeLens", "uri", u, "lenses", titles)
	}
	return lenses, nil
}

// codeLenses renders one lens per traced line, in line order.
func codeLenses(u uri.URI, v fileView, now time.Time) []protocol.CodeLens {
	lenses := make([]protocol.CodeLens, 0, len(v.Traced))
	for _, t := range v.Traced {
		tip := lensTooltip(&t.LineHits)
		lenses = append(lenses, protocol.CodeLens{
			Range: protocol.Range{Start: protocol.Position{Line: uint32(t.Cur)}, End: protocol.Position{Line: uint32(t.Cur)}},
			Command: protocol.Command{
				Title:     lensTitle(&t.LineHits, now),
				Tooltip:   &tip,
				Command:   CommandShowHits,
				Arguments: []protocol.LSPAny{jsonString(string(u)), jsonInt(t.Cur)},
			},
		})
	}
	return lenses
}

// lensTitle is `● 128 hits · 3 hosts · last 2s ago`.
func lensTitle(l *LineHits, now time.Time) string {
	return fmt.Sprintf("● %s · %s · last %s", plural(l.Count, "hit"), plural(uint64(len(l.Hosts)), "host"), ago(now.Sub(l.Last)))
}

func lensTooltip(l *LineHits) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s in %s", plural(l.Count, "hit"), plural(uint64(l.Processes), "process"))
	if r := l.Rate(); r > 0 {
		fmt.Fprintf(&b, ", %.1f/s lately", r)
	}
	if l.Dropped > 0 {
		fmt.Fprintf(&b, ", %d more left out by rate limits", l.Dropped)
	}
	return b.String()
}

func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ago renders a age as "2s ago", "5m ago", "3h ago", "2d ago".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	case d >= time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	case d >= time.Minute:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	}
	return fmt.Sprintf("%ds ago", int(d/time.Second))
}
