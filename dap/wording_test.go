package dap

import (
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// TestUncapturedWording: a value not captured reads the same in every
// one-line view the adapter writes (the console's hit line, the hits view,
// the timeline) as in the language server's lenses, hovers and hints
// (lsp/testdata/selector.txtar): its mark. The long reason goes only where
// there is room for it: below the console's line and in the Variables view.
func TestUncapturedWording(t *testing.T) {
	const reason = "the value is in a floating-point register at this line, which a uprobe cannot read; trace a line where it is in memory, or trace with the delve backend"
	h := &fleet.Hit{Host: "orders-a", Pid: 10, Process: fleet.ProcessRef{Exe: "orders"}, Function: "main.price", Args: []fleet.Variable{
		{Name: "n", Type: "int", Value: "3"},
		{Name: "rate", Type: "float64", Value: "<not captured: float64>", Unreadable: reason},
		{Name: "total", Type: "float64", Unreadable: reason}, // from an agent that set no mark
	}}
	for _, c := range []struct{ view, text string }{
		{"the console's hit line", compactHit(h)},
		{"the hits view and the timeline", hitValues(h)},
	} {
		for _, want := range []string{"n=3", "rate=<not captured: float64>", "total=<not captured>"} {
			if !strings.Contains(c.text, want) {
				t.Errorf("%s %q lacks %q", c.view, c.text, want)
			}
		}
		if strings.Contains(c.text, "floating-point register") {
			t.Errorf("%s %q carries the long reason", c.view, c.text)
		}
	}
	notes := unreadableNotes(h)
	for _, want := range []string{"rate <not captured: float64>: " + reason, "total <not captured>: " + reason} {
		if !strings.Contains(notes, want) {
			t.Errorf("the console's notes %q lack %q", notes, want)
		}
	}
	if got, want := variableValue(&h.Args[1]), "<not captured: float64> ("+reason+")"; got != want {
		t.Errorf("Variables shows %q, want %q", got, want)
	}
	if got := variableValue(&h.Args[0]); got != "3" {
		t.Errorf("Variables shows %q for a captured 3", got)
	}
}
