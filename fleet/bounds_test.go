package fleet

import (
	"strings"
	"testing"
	"time"
)

// Every bound refuses what passes it with CodeTooLarge, names the field and
// the bound, and says what to write instead; the bound itself passes.
func TestBounds(t *testing.T) {
	good := func() Spec {
		return Spec{ID: "tp-1", Location: Location{Path: "a/b.go", Line: 3}}
	}
	exprs := func(n int) []string {
		e := make([]string, n)
		for i := range e {
			e[i] = "x"
		}
		return e
	}
	globs := func(n int) []string {
		g := make([]string, n)
		for i := range g {
			g[i] = "h-*"
		}
		return g
	}
	revs := func(n int) map[string]int {
		m := make(map[string]int, n)
		for i := range n {
			m[strings.Repeat("a", 7)+string(rune('a'+i%26))+strings.Repeat("b", i/26)] = 1
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		at    func(*Spec) // the spec at its bound: valid
		over  func(*Spec) // one past it
		quote string
	}{
		{"stack depth", func(s *Spec) { s.Capture.StackDepth = MaxStackDepth }, func(s *Spec) { s.Capture.StackDepth = 1_000_000_000 }, "capture.stackDepth is 1000000000, more than the 100"},
		{"string length", func(s *Spec) { s.Capture.MaxString = MaxStringLen }, func(s *Spec) { s.Capture.MaxString = MaxStringLen + 1 }, "capture.maxStringLen"},
		{"array values", func(s *Spec) { s.Capture.MaxArray = MaxArrayValues }, func(s *Spec) { s.Capture.MaxArray = MaxArrayValues + 1 }, "capture.maxArrayValues is 1025"},
		{"struct depth", func(s *Spec) { s.Capture.MaxDepth, s.Capture.MaxArray = MaxStructDepth, 2 }, func(s *Spec) { s.Capture.MaxDepth = MaxStructDepth + 1 }, "capture.maxStructDepth"},
		{"variables", func(s *Spec) { s.Capture.MaxVariable = MaxVariables }, func(s *Spec) { s.Capture.MaxVariable = MaxVariables + 1 }, "capture.maxVariables"},
		{"values per variable", func(s *Spec) { s.Capture.MaxArray, s.Capture.MaxDepth = 1024, 2 }, func(s *Spec) { s.Capture.MaxArray, s.Capture.MaxDepth = 1024, 3 }, "could load 1024^3 values for one variable, more than the 1048576"},
		{"expressions", func(s *Spec) { s.Capture.Exprs = exprs(MaxExprs) }, func(s *Spec) { s.Capture.Exprs = exprs(MaxExprs + 1) }, "the number of capture.exprs is 17"},
		{"expression length", func(s *Spec) { s.Capture.Exprs = []string{strings.Repeat("x", MaxExprLen)} }, func(s *Spec) { s.Capture.Exprs = []string{strings.Repeat("x", MaxExprLen+1)} }, "capture.exprs[0]"},
		{"condition length", func(s *Spec) { s.Condition = strings.Repeat("x", MaxExprLen) }, func(s *Spec) { s.Condition = strings.Repeat("x", 960<<10) }, "condition's length is 983040"},
		{"log message length", func(s *Spec) { s.LogMessage = strings.Repeat("x", MaxLogMessageLen) }, func(s *Spec) { s.LogMessage = strings.Repeat("x", MaxLogMessageLen+1) }, "logMessage's length"},
		{"log expressions", func(s *Spec) { s.LogMessage = strings.Repeat("{x} {{", MaxLogExprs) }, func(s *Spec) { s.LogMessage = strings.Repeat("{x}", MaxLogExprs+1) }, "the number of {expr} in logMessage is 17"},
		{"hosts", func(s *Spec) { s.Selector.Hosts = globs(MaxSelectorGlobs) }, func(s *Spec) { s.Selector.Hosts = globs(MaxSelectorGlobs + 1) }, "selector.hosts"},
		{"processes", func(s *Spec) { s.Selector.Processes = globs(MaxSelectorGlobs) }, func(s *Spec) { s.Selector.Processes = globs(MaxSelectorGlobs + 1) }, "selector.processes"},
		{"glob length", func(s *Spec) { s.Selector.Processes = []string{strings.Repeat("a", MaxGlobLen)} }, func(s *Spec) { s.Selector.Processes = []string{strings.Repeat("a", MaxGlobLen+1)} }, "the length of a glob"},
		{"pids", func(s *Spec) { s.Selector.Pids = make([]int, MaxSelectorPids); s.Selector.Pids[0] = 1 }, func(s *Spec) { s.Selector.Pids = make([]int, MaxSelectorPids+1) }, "selector.pids is 1025"},
		{"id", func(s *Spec) { s.ID = strings.Repeat("i", MaxIDLen) }, func(s *Spec) { s.ID = strings.Repeat("i", MaxIDLen+1) }, "the id's length"},
		{"path", func(s *Spec) { s.Location.Path = strings.Repeat("p", MaxPathLen) }, func(s *Spec) { s.Location.Path = strings.Repeat("p", MaxPathLen+1) }, "location.path's length"},
		{"revisions", func(s *Spec) { s.Location.Lines = revs(MaxRevisions) }, func(s *Spec) { s.Location.Lines = revs(MaxRevisions + 1) }, "location.lines"},
		{"owner", func(s *Spec) { s.Owner = strings.Repeat("o", MaxOwnerLen) }, func(s *Spec) { s.Owner = strings.Repeat("o", MaxOwnerLen+1) }, "owner's length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.at(&s)
			if tc.name == "pids" {
				for i := range s.Selector.Pids {
					s.Selector.Pids[i] = i + 1
				}
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("at the bound: %v", err)
			}
			s = good()
			tc.over(&s)
			e := AsError(s.Validate())
			if e == nil || e.Code != CodeTooLarge || !strings.Contains(e.Message, tc.quote) || !strings.Contains(e.Message, "allow") {
				t.Fatalf("past the bound: %v, want %s containing %q", e, CodeTooLarge, tc.quote)
			}
			t.Log(e.Message)
		})
	}
}

// Selectors that can match nothing are refused, each saying what to write.
func TestSelectorMatchesNothing(t *testing.T) {
	for _, tc := range []struct {
		sel   Selector
		quote string
	}{
		{Selector{Processes: []string{"["}}, `glob "[" in selector.processes has '['`},
		{Selector{Processes: []string{`orders\*`}}, `has '\\'`},
		{Selector{Hosts: []string{"orders-[ab]"}}, "only * (any run of characters) and ? (one character)"},
		{Selector{Hosts: []string{"orders.example.com"}}, "can match no host: host names are letters, digits"},
		{Selector{Pids: []int{0}}, "selector.pids has 0, which is no process"},
	} {
		s := Spec{ID: "tp", Location: Location{Path: "a.go", Line: 1}, Selector: tc.sel}
		e := AsError(s.Validate())
		if e == nil || e.Code != CodeBadRequest || !strings.Contains(e.Message, tc.quote) {
			t.Errorf("selector %+v: %v, want %s containing %q", tc.sel, e, CodeBadRequest, tc.quote)
		}
	}
	s := Spec{ID: "tp", Location: Location{Path: "a.go", Line: 1}, Selector: Selector{Hosts: []string{"shop-?", "*"}, Processes: []string{"github.com/acme/*", "orders"}}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

// A spec already expired is refused where it is declared; Validate, which
// agents run on the bucket's specs, leaves expiry to them.
func TestValidateAtExpired(t *testing.T) {
	now := time.Now()
	s := Spec{ID: "tp", Location: Location{Path: "a.go", Line: 1}, Limits: Limits{ExpiresAt: now.Add(-time.Minute)}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	e := AsError(s.ValidateAt(now))
	if e == nil || e.Code != CodeExpired || !strings.Contains(e.Message, "1m0s before it was declared") || !strings.Contains(e.Message, "later time") {
		t.Fatalf("ValidateAt: %v", e)
	}
	s.Limits.ExpiresAt = now.Add(time.Minute)
	if err := s.ValidateAt(now); err != nil {
		t.Fatal(err)
	}
}
