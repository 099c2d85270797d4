package lsp

import (
	"os"
	"sort"

	"go.lsp.dev/uri"
)

// placed is one traced line where it is now in the buffer.
type placed struct {
	Cur int // 0-based line of the buffer
	LineHits
}

// fileView is what the renderers need of one file: its current lines and
// its traced lines placed on them, sorted by Cur.
type fileView struct {
	Lines  []string
	Traced []placed
}

// view places the hits of the file u names on its buffer (or, when it is
// not open, on the file on disk).
func (s *server) view(u uri.URI) fileView {
	file := localPath(u)
	s.mu.Lock()
	agg := s.agg
	d := s.docs[file]
	var lines []string
	var moved []int
	if d != nil {
		lines = append(lines, d.lines...)
		moved = append(moved, d.moved...)
	}
	s.mu.Unlock()
	hits := agg.File(file)
	if len(hits) == 0 {
		return fileView{Lines: lines}
	}
	if d == nil {
		b, err := os.ReadFile(file)
		if err != nil {
			return fileView{}
		}
		d = newDocument(string(b))
		lines, moved = d.lines, d.moved
	}
	return place(&document{lines: lines, moved: moved}, hits)
}

// place puts hits on the lines of d they moved to; hits of deleted lines
// are left out.
func place(d *document, hits []LineHits) fileView {
	v := fileView{Lines: d.lines}
	for _, h := range hits {
		if cur, ok := d.current(h.Line); ok {
			v.Traced = append(v.Traced, placed{Cur: cur, LineHits: h})
		}
	}
	sort.Slice(v.Traced, func(i, j int) bool { return v.Traced[i].Cur < v.Traced[j].Cur })
	return v
}

// at returns the traced line placed on buffer line cur.
func (v *fileView) at(cur int) (*placed, bool) {
	i := sort.Search(len(v.Traced), func(i int) bool { return v.Traced[i].Cur >= cur })
	if i < len(v.Traced) && v.Traced[i].Cur == cur {
		return &v.Traced[i], true
	}
	return nil, false
}
