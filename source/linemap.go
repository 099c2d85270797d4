package source

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"
)

// LineMap pairs the lines of two versions of a file (A and B) through a
// minimal line diff (Myers). A line that is in an unchanged stretch has a
// counterpart on the other side; a line in an edited stretch has none, and
// is marked changed when the stretch also has lines on the other side (the
// line was rewritten) or missing when it has none (the line was added or
// removed).
type LineMap struct {
	aToB, bToA         []int  // 1-based line on the other side, 0 for none; index 0 unused
	aChanged, bChanged []bool // the line sits in a stretch edited on both sides
}

// NewLineMap diffs a and b line by line.
func NewLineMap(a, b []string) *LineMap {
	m := &LineMap{
		aToB:     make([]int, len(a)+1),
		bToA:     make([]int, len(b)+1),
		aChanged: make([]bool, len(a)+1),
		bChanged: make([]bool, len(b)+1),
	}
	// Timeout 0: no deadline, and no half-match shortcut, so the diff is
	// minimal and deterministic.
	diffs := diff.DoWithTimeout(joinLines(a), joinLines(b), 0)
	i, j := 1, 1 // next line of a and of b
	for k := 0; k < len(diffs); {
		d := diffs[k]
		if d.Type == diffmatchpatch.DiffEqual {
			for range strings.Count(d.Text, "\n") {
				m.aToB[i], m.bToA[j] = j, i
				i, j = i+1, j+1
			}
			k++
			continue
		}
		// One edited stretch: the deletes and inserts up to the next equal.
		var dels, ins int
		for ; k < len(diffs) && diffs[k].Type != diffmatchpatch.DiffEqual; k++ {
			n := strings.Count(diffs[k].Text, "\n")
			if diffs[k].Type == diffmatchpatch.DiffDelete {
				dels += n
			} else {
				ins += n
			}
		}
		for range dels {
			m.aChanged[i] = ins > 0
			i++
		}
		for range ins {
			m.bChanged[j] = dels > 0
			j++
		}
	}
	return m
}

// joinLines ends every line with a newline, so that a last line without one
// still equals the same line with one.
func joinLines(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// splitLines splits file content into lines without their line endings, so
// that a checkout with CRLF endings (core.autocrlf) matches LF blobs.
func splitLines(content []byte) []string {
	s := string(content)
	if s == "" {
		return nil
	}
	s = strings.TrimSuffix(s, "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// Mapping says why a line has no counterpart on the other side.
type Mapping int

const (
	Mapped     Mapping = iota // the line has a counterpart
	Changed                   // the line was rewritten on the other side
	Missing                   // the other side has no such line (added or removed)
	OutOfRange                // the given side has no such line
)

func (m Mapping) String() string {
	switch m {
	case Mapped:
		return "mapped"
	case Changed:
		return "changed"
	case Missing:
		return "missing"
	case OutOfRange:
		return "out of range"
	}
	return fmt.Sprintf("Mapping(%d)", int(m))
}

// AToB returns the line of B that line n of A is, or 0 and why there is none.
func (m *LineMap) AToB(n int) (int, Mapping) { return lookup(m.aToB, m.aChanged, n) }

// BToA returns the line of A that line n of B is, or 0 and why there is none.
func (m *LineMap) BToA(n int) (int, Mapping) { return lookup(m.bToA, m.bChanged, n) }

func lookup(to []int, changed []bool, n int) (int, Mapping) {
	switch {
	case n < 1 || n >= len(to):
		return 0, OutOfRange
	case to[n] != 0:
		return to[n], Mapped
	case changed[n]:
		return 0, Changed
	}
	return 0, Missing
}

// LineError says why a line of one version of a file has no counterpart in
// another: it was changed there, or it does not exist there.
type LineError struct {
	Path    string  // the file's slash path in the repository, as the line was given
	Line    int     // the line as given
	Text    string  // the line's text, trimmed
	Rev     string  // the revision of the other side
	Why     Mapping // Changed, Missing or OutOfRange
	Lines   int     // how many lines the given side has (for OutOfRange)
	ToLocal bool    // the line was given in Rev and the other side is the checkout
	// Uncommitted says the checkout's line is an edit not yet committed:
	// the change is the user's own, not Rev's.
	Uncommitted bool
}

func (e *LineError) Error() string {
	where := "in revision " + shortRev(e.Rev)
	if e.ToLocal {
		where = "in the checkout"
	}
	switch {
	case e.Why == OutOfRange:
		return fmt.Sprintf("%s has no line %d (it has %d lines)", e.Path, e.Line, e.Lines)
	case e.Uncommitted:
		return fmt.Sprintf("line %d of %s (%q) is an uncommitted edit in the checkout: revision %s, which runs, does not have it. Commit and deploy it, or trace a line that runs", e.Line, e.Path, e.Text, shortRev(e.Rev))
	case e.Why == Changed:
		return fmt.Sprintf("line %d of %s (%q) was changed %s, so it does not run there", e.Line, e.Path, e.Text, where)
	}
	return fmt.Sprintf("line %d of %s (%q) does not exist %s", e.Line, e.Path, e.Text, where)
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
