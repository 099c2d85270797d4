package source_test

import (
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// The agent's side of source sync: which line a process of each revision
// gets from a location the client mapped.
func TestLocationFor(t *testing.T) {
	const (
		head = "1111111111111111111111111111111111111111"
		old  = "2222222222222222222222222222222222222222"
		bad  = "3333333333333333333333333333333333333333"
		new  = "4444444444444444444444444444444444444444"
	)
	mapped := fleet.Location{
		Module: "example.com/shop", Path: "pay/pay.go", Line: 10, Revision: head,
		Lines:   map[string]int{head: 10, old[:7]: 8},
		Paths:   map[string]string{old[:7]: "pay/old.go"},
		Refused: map[string]string{bad: "line 10 of pay/pay.go was changed in revision 333333333333"},
	}
	for _, tc := range []struct {
		name     string
		loc      fleet.Location
		rev      string
		modified bool
		path     string
		line     int
		warning  string
		refused  string
	}{
		{"unmapped location: as before", fleet.Location{Path: "pay/pay.go", Line: 10}, old, false, "pay/pay.go", 10, "", ""},
		{"checkout's revision", mapped, head, false, "pay/pay.go", 10, "", ""},
		{"mapped by prefix, renamed", mapped, old, false, "pay/old.go", 8, "", ""},
		{"refused", mapped, bad, false, "", 0, "", "not traced in revision 333333333333: line 10 of pay/pay.go was changed"},
		{"refused but dirty: as is", mapped, bad, true, "pay/pay.go", 10, "vcs.modified=true, revision 333333333333", ""},
		{"not listed", mapped, new, false, "pay/pay.go", 10, "not mapped into revision 444444444444", ""},
		{"no revision", mapped, "", false, "pay/pay.go", 10, "carries no vcs.revision", ""},
		{"short revision is not a prefix match", mapped, "222", false, "pay/pay.go", 10, "not mapped", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc, warning, err := tc.loc.For(tc.rev, tc.modified)
			if tc.refused != "" {
				if err == nil || err.Code != fleet.CodeLineChanged || !strings.Contains(err.Message, tc.refused) {
					t.Fatalf("For = %+v, %v; want %s %q", loc, err, fleet.CodeLineChanged, tc.refused)
				}
				return
			}
			if err != nil || loc.Path != tc.path || loc.Line != tc.line || loc.Lines != nil || loc.Refused != nil {
				t.Fatalf("For = %+v, %v; want %s:%d and no per-revision fields", loc, err, tc.path, tc.line)
			}
			if (tc.warning == "") != (warning == "") || !strings.Contains(warning, tc.warning) {
				t.Fatalf("warning %q, want one saying %q", warning, tc.warning)
			}
		})
	}
}

func TestLocationValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		loc  fleet.Location
		msg  string
	}{
		{"bad line", fleet.Location{Path: "a.go", Line: 1, Lines: map[string]int{"abc1234": 0}}, "a line from 1"},
		{"empty revision", fleet.Location{Path: "a.go", Line: 1, Lines: map[string]int{"": 3}}, "needs a revision"},
		{"both", fleet.Location{Path: "a.go", Line: 1, Lines: map[string]int{"abc1234": 3}, Refused: map[string]string{"abc1234": "x"}}, "both mapped and refused"},
		{"no reason", fleet.Location{Path: "a.go", Line: 1, Refused: map[string]string{"abc1234": ""}}, "a reason"},
		{"empty path", fleet.Location{Path: "a.go", Line: 1, Paths: map[string]string{"abc1234": ""}}, "a path"},
	} {
		s := fleet.Spec{ID: "t", Location: tc.loc}
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.msg)
		}
	}
	// Round trip through the wire, and an old spec stays as it was.
	s := fleet.Spec{ID: "t", Location: fleet.Location{Path: "a.go", Line: 1}}
	if b := string(fleet.Encode(&s)); strings.Contains(b, "lines") || strings.Contains(b, "revision") {
		t.Errorf("an unmapped location encodes new fields: %s", b)
	}
	s.Location.Lines, s.Location.Revision = map[string]int{"abc1234": 2}, "abc1234"
	var back fleet.Spec
	if err := fleet.Decode(fleet.Encode(&s), "tracepoint spec", &back); err != nil || back.Location.Lines["abc1234"] != 2 || back.Location.Revision != "abc1234" {
		t.Errorf("round trip: %+v, %v", back.Location, err)
	}
}
