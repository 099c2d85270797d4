package lsp

import (
	"strings"

	"go.lsp.dev/protocol"
)

// document is an open editor buffer: its text, and where each line of the
// file as opened (the file the processes run) is now. Hits name lines of the
// file as opened; lenses and hints go to the lines those became, so that
// inserting or deleting lines above a traced line never moves its lens onto
// another line.
type document struct {
	lines []string
	// moved[i] is the current 0-based line of line i of the file as opened,
	// or -1 if the user deleted it.
	moved []int
}

func newDocument(text string) *document {
	d := &document{lines: splitLines(text)}
	d.moved = make([]int, len(d.lines))
	for i := range d.moved {
		d.moved[i] = i
	}
	return d
}

// current maps a 1-based line of the file as opened to the 0-based line of
// the buffer; ok is false for a line the user deleted or that never was.
func (d *document) current(line int) (int, bool) {
	i := line - 1
	if i < 0 || i >= len(d.moved) || d.moved[i] < 0 {
		return 0, false
	}
	return d.moved[i], true
}

// original maps a 0-based buffer line back to the 1-based line of the file
// as opened; ok is false for a line the user added.
func (d *document) original(cur int) (int, bool) {
	for i, c := range d.moved {
		if c == cur {
			return i + 1, true
		}
	}
	return 0, false
}

// apply applies one content change.
func (d *document) apply(ch protocol.TextDocumentContentChangeEvent) {
	switch ch := ch.(type) {
	case *protocol.TextDocumentContentChangePartial:
		d.applyRange(ch.Range, ch.Text)
	case *protocol.TextDocumentContentChangeWholeDocument:
		d.replaceAll(ch.Text)
	}
}

// applyRange replaces the text in r with text and moves the lines after it.
func (d *document) applyRange(r protocol.Range, text string) {
	sl, el := int(r.Start.Line), int(r.End.Line)
	if sl > len(d.lines) {
		sl = len(d.lines)
	}
	if el > len(d.lines) {
		el = len(d.lines)
	}
	if el < sl {
		el = sl
	}
	lineAt := func(i int) string {
		if i < len(d.lines) {
			return d.lines[i]
		}
		return ""
	}
	first, last := lineAt(sl), lineAt(el)
	so := byteOffset(first, int(r.Start.Character))
	eo := byteOffset(last, int(r.End.Character))
	if sl == el && eo < so {
		eo = so
	}
	repl := strings.Split(first[:so]+text+last[eo:], "\n")
	for i, l := range repl {
		repl[i] = strings.TrimSuffix(l, "\r")
	}
	end := el + 1
	if end > len(d.lines) {
		end = len(d.lines)
	}
	if sl == len(d.lines) && text == "" {
		return
	}
	delta := len(repl) - (end - sl)
	d.lines = append(d.lines[:sl:sl], append(repl, d.lines[end:]...)...)

	// A line moves with the edit if the edit ends at or before its start;
	// it stays if the edit starts on it; an edit that spans into it from
	// above deletes it (its text joined the edit's first line).
	endsAtStart := r.End.Character == 0 || eo == 0
	for i, c := range d.moved {
		switch {
		case c < 0 || c < sl:
		case c > el || (c == el && endsAtStart && (sl < el || so == 0)):
			d.moved[i] = c + delta
		case c == sl && !(so == 0 && sl < el && endsAtStart):
			// Edited in place. (Whole lines removed from its start on
			// take it with them: the default case.)
		default:
			d.moved[i] = -1
		}
	}
}

// replaceAll replaces the whole text. Lines equal at the start and at the
// end keep their lens; between them, lines are matched by a longest common
// subsequence (when the changed middle is small enough to afford it), and
// lines without a match are treated as rewritten.
func (d *document) replaceAll(text string) {
	old := d.lines
	now := splitLines(text)
	pre := 0
	for pre < len(old) && pre < len(now) && old[pre] == now[pre] {
		pre++
	}
	suf := 0
	for suf < len(old)-pre && suf < len(now)-pre && old[len(old)-1-suf] == now[len(now)-1-suf] {
		suf++
	}
	// to[i] is the new line of old line i, or -1.
	to := make([]int, len(old))
	for i := range old {
		switch {
		case i < pre:
			to[i] = i
		case i >= len(old)-suf:
			to[i] = i + len(now) - len(old)
		default:
			to[i] = -1
		}
	}
	matchMiddle(old[pre:len(old)-suf], now[pre:len(now)-suf], to[pre:len(old)-suf], pre)
	for i, c := range d.moved {
		if c >= 0 {
			d.moved[i] = to[c]
		}
	}
	d.lines = now
}

// maxMatchCells bounds the work of matching changed lines: past it, the
// changed lines are treated as rewritten.
const maxMatchCells = 1 << 20

// matchMiddle sets to[i] = off+j for the lines a[i] == b[j] of a longest
// common subsequence of a and b.
func matchMiddle(a, b []string, to []int, off int) {
	if len(a) == 0 || len(b) == 0 || len(a)*len(b) > maxMatchCells {
		return
	}
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	w := len(b) + 1
	lcs := make([]int32, (len(a)+1)*w)
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
			} else {
				lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
			}
		}
	}
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] == b[j]:
			to[i] = off + j
			i++
			j++
		case lcs[(i+1)*w+j] >= lcs[i*w+j+1]:
			i++
		default:
			j++
		}
	}
}
