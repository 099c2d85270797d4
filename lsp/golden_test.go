package lsp

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.lsp.dev/protocol"

	"github.com/riptrace/riptrace/fleet"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// goldenNow is the clock of every golden file; hits in them are stamped
// relative to it.
var goldenNow = time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)

// TestGolden renders the lenses, inlay hints and hovers of each
// testdata/*.txtar archive and compares them with its "want" file. An
// archive holds:
//
//	-- main.go --      the source as the editor opened it
//	-- hits.jsonl --   one fleet.Hit per line ("ago": "2s" sets serverTime)
//	-- edits.json --   optional: [{"range": {...}, "text": "..."}] applied in order
//	-- want --         the buffer with ⟪lens⟫ lines above traced lines,
//	                   ⟨hints⟩ spliced in, then each traced line's hover
//
// go test ./lsp -run TestGolden -update rewrites "want".
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in testdata: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			ar := parseTxtar(data)
			got := renderGolden(t, ar)
			if *update {
				ar.set("want", got)
				if err := os.WriteFile(file, ar.format(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := ar.get("want"); got != want {
				t.Errorf("%s: output differs from \"want\" (go test ./lsp -run TestGolden -update rewrites it)\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

func renderGolden(t *testing.T, ar *txtar) string {
	t.Helper()
	src := ar.get("main.go")
	agg := NewAggregate(0)
	var placed []fleet.Placed
	for i, line := range strings.Split(strings.TrimSpace(ar.get("hits.jsonl")), "\n") {
		// A hit as the timeline placed it: in the order of the lines
		// unless it says its order, run when it arrived unless it says
		// how long before ("ran").
		var h struct {
			fleet.Placed
			Ago string `json:"ago"`
			Ran string `json:"ran"`
		}
		dec := json.NewDecoder(strings.NewReader(line))
		if err := dec.Decode(&h); err != nil {
			t.Fatalf("hits.jsonl line %d: %v", i+1, err)
		}
		ago, err := time.ParseDuration(h.Ago)
		if err != nil {
			t.Fatalf("hits.jsonl line %d: ago: %v", i+1, err)
		}
		h.ServerTime = goldenNow.Add(-ago)
		h.Seq = uint64(i + 1)
		if h.Order == 0 {
			h.Order = h.Seq
		}
		h.CoordinatedTime = h.ServerTime
		if h.Ran != "" {
			ran, err := time.ParseDuration(h.Ran)
			if err != nil {
				t.Fatalf("hits.jsonl line %d: ran: %v", i+1, err)
			}
			h.CoordinatedTime = goldenNow.Add(-ran)
		}
		placed = append(placed, h.Placed)
	}
	// The language server reads hits as the timeline releases them.
	slices.SortStableFunc(placed, func(a, b fleet.Placed) int { return cmp.Compare(a.Order, b.Order) })
	for _, p := range placed {
		agg.Add("main.go", p)
	}
	doc := newDocument(src)
	if e := ar.get("edits.json"); e != "" {
		var edits []struct {
			Range protocol.Range `json:"range"`
			Text  string         `json:"text"`
		}
		if err := json.Unmarshal([]byte(e), &edits); err != nil {
			t.Fatalf("edits.json: %v", err)
		}
		for _, ed := range edits {
			doc.apply(&protocol.TextDocumentContentChangePartial{Range: ed.Range, Text: ed.Text})
		}
	}
	v := place(doc, agg.File("main.go"))
	lenses := codeLenses("file:///w/main.go", v, goldenNow)
	hints := inlayHints(v, protocol.Range{End: protocol.Position{Line: uint32(len(v.Lines))}})

	var b strings.Builder
	for i, line := range v.Lines {
		for _, l := range lenses {
			if int(l.Range.Start.Line) == i {
				indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
				fmt.Fprintf(&b, "%s⟪%s⟫\n", indent, l.Command.Title)
			}
		}
		var at []protocol.InlayHint
		for _, h := range hints {
			if int(h.Position.Line) == i {
				at = append(at, h)
			}
		}
		sort.SliceStable(at, func(a, c int) bool { return at[a].Position.Character < at[c].Position.Character })
		prev := 0
		for _, h := range at {
			off := byteOffset(line, int(h.Position.Character))
			pad := ""
			if h.PaddingLeft != nil && *h.PaddingLeft {
				pad = " "
			}
			fmt.Fprintf(&b, "%s%s⟨%s⟩", line[prev:off], pad, h.Label.(protocol.String))
			prev = off
		}
		b.WriteString(line[prev:] + "\n")
	}
	for _, tr := range v.Traced {
		fmt.Fprintf(&b, "\nhover line %d:\n%s", tr.Cur+1, hoverMarkdown(&tr.LineHits, "", goldenNow))
	}
	return b.String()
}

// txtar is a minimal reader and writer of the txtar format
// (golang.org/x/tools/txtar), which this module does not otherwise need.
type txtar struct {
	comment string
	names   []string
	data    map[string]string
}

func parseTxtar(data []byte) *txtar {
	ar := &txtar{data: make(map[string]string)}
	cur := ""
	var buf bytes.Buffer
	flush := func() {
		if cur == "" {
			ar.comment = buf.String()
		} else {
			ar.names = append(ar.names, cur)
			ar.data[cur] = buf.String()
		}
		buf.Reset()
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "-- "); ok && strings.HasSuffix(name, " --") {
			flush()
			cur = strings.TrimSuffix(name, " --")
			continue
		}
		buf.WriteString(line)
	}
	flush()
	return ar
}

func (ar *txtar) get(name string) string { return ar.data[name] }

func (ar *txtar) set(name, content string) {
	if _, ok := ar.data[name]; !ok {
		ar.names = append(ar.names, name)
	}
	ar.data[name] = content
}

func (ar *txtar) format() []byte {
	var b bytes.Buffer
	b.WriteString(ar.comment)
	for _, n := range ar.names {
		fmt.Fprintf(&b, "-- %s --\n%s", n, ar.data[n])
	}
	return b.Bytes()
}
