package lsp

import (
	"slices"
	"testing"

	"go.lsp.dev/protocol"
)

// TestDocumentWholeChanges: clients that send the whole text (sync kind
// Full) keep traced lines that were not touched, wherever they moved.
func TestDocumentWholeChanges(t *testing.T) {
	d := newDocument("a\nb\nc\nd\n")
	d.apply(&protocol.TextDocumentContentChangeWholeDocument{Text: "new\na\nb\nC\nd\n"})
	var got []int
	for line := 1; line <= 4; line++ {
		cur, ok := d.current(line)
		if !ok {
			cur = -1
		}
		got = append(got, cur)
	}
	// a and b moved down one; c was rewritten; d moved down one.
	if want := []int{1, 2, -1, 4}; !slices.Equal(got, want) {
		t.Errorf("lines 1-4 now at %v, want %v", got, want)
	}
	if line, ok := d.original(4); !ok || line != 4 {
		t.Errorf("original(4) = %d, %v; want line 4", line, ok)
	}
	if _, ok := d.original(0); ok {
		t.Error("original(0): the inserted line has no original")
	}
}

// TestDocumentJoinAndSplit: joining a traced line onto the line above (a
// deletion of the newline before it) moves it up; splitting the line above
// moves it down.
func TestDocumentJoinAndSplit(t *testing.T) {
	d := newDocument("one\ntwo\nthree\n")
	// Delete the newline at the end of "one": "onetwo"; line 3 moves up.
	d.applyRange(protocol.Range{Start: protocol.Position{Line: 0, Character: 3}, End: protocol.Position{Line: 1, Character: 0}}, "")
	if cur, ok := d.current(3); !ok || cur != 1 || d.lines[1] != "three" {
		t.Fatalf("after the join, line 3 at %d (%v), lines %q", cur, ok, d.lines)
	}
	d.applyRange(protocol.Range{Start: protocol.Position{Line: 0, Character: 1}, End: protocol.Position{Line: 0, Character: 1}}, "\n")
	if cur, ok := d.current(3); !ok || cur != 2 || d.lines[2] != "three" {
		t.Fatalf("after the split, line 3 at %d (%v), lines %q", cur, ok, d.lines)
	}
}

func TestIdentAt(t *testing.T) {
	for _, tc := range []struct {
		line, name string
		want       int // -1: none
	}{
		{`	x := acc*31 + uint64(i)`, "x", 2},
		{`	x := acc*31 + uint64(i)`, "i", 23},
		{`	log.Printf("charge %s cents=%d", cents)`, "cents", 39},
		{`	log.Printf("approved %t", approved) // approved`, "approved", 35},
		{`	r := req.Amount + Amount`, "Amount", 25},
		{`	s := 'x' + x`, "x", 13},
		{"	s := `raw x` + x", "x", 17},
		{`	// x only in a comment`, "x", -1},
		{`	name := "x"`, "x", -1},
		{`	häh := 1; h := häh`, "häh", 5},
	} {
		got, ok := identAt(tc.line, tc.name)
		if !ok {
			got = -1
		}
		if got != tc.want {
			t.Errorf("identAt(%q, %q) = %d, want %d", tc.line, tc.name, got, tc.want)
		}
	}
}
