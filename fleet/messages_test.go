package fleet

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeStrict(t *testing.T) {
	for _, tc := range []struct {
		name, in, code, msg string
	}{
		{"empty", ``, CodeBadRequest, "empty attach request"},
		{"spaces", "  \n", CodeBadRequest, "empty attach request"},
		{"malformed", `{"v":1,`, CodeBadRequest, "malformed attach request"},
		{"array", `[]`, CodeBadRequest, "malformed attach request"},
		{"no version", `{"pid":3}`, CodeBadRequest, `add "v": 1`},
		{"future version", `{"v":2,"pid":3}`, CodeBadVersion, "version 2"},
		{"unknown field", `{"v":1,"pid":3,"pdi":4}`, CodeBadRequest, `unknown field "pdi": a typo, or a field of a newer riptrace`},
		{"wrong type", `{"v":1,"pid":"3"}`, CodeBadRequest, "malformed attach request"},
		{"trailing", `{"v":1,"pid":3} {}`, CodeBadRequest, "after top-level value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r AttachRequest
			err := Decode([]byte(tc.in), "attach request", &r)
			e := AsError(err)
			if e == nil || e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("Decode(%q) = %v, want %s containing %q", tc.in, err, tc.code, tc.msg)
			}
		})
	}
	var r AttachRequest
	if err := Decode([]byte(`{"v":1,"pid":3}`), "attach request", &r); err != nil || r.Pid != 3 {
		t.Fatalf("Decode of a good request: %+v, %v", r, err)
	}
}

func TestEncodeStampsVersion(t *testing.T) {
	h := Hit{Tracepoint: "t1", Args: []Variable{{Name: "x", Type: "int", Value: "1"}}}
	var back Hit
	if err := Decode(Encode(&h), "hit", &back); err != nil {
		t.Fatal(err)
	}
	if back.V != HitVersion || back.Tracepoint != "t1" || back.Args[0].Value != "1" {
		t.Fatalf("round trip = %+v", back)
	}
	// A hit of the version before, and a spec of the hits' version, are
	// refused saying which version each side speaks.
	err := Decode([]byte(`{"v":1,"tracepoint":"t1"}`), "hit", &back)
	if e := AsError(err); e == nil || e.Code != CodeBadVersion || !strings.Contains(e.Message, "hit has version 1, this side speaks version 2") {
		t.Fatalf("a version 1 hit: %v", err)
	}
	var spec Spec
	err = Decode([]byte(`{"v":2,"id":"t1"}`), "tracepoint spec", &spec)
	if e := AsError(err); e == nil || e.Code != CodeBadVersion || !strings.Contains(e.Message, "speaks version 1") {
		t.Fatalf("a version 2 spec: %v", err)
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "github.com/acme/orders/cmd/orders", true},
		{"github.com/acme/*", "github.com/acme/orders/cmd/orders", true},
		{"github.com/acme/*", "github.com/acmex/orders", false},
		{"orders-?", "orders-a", true},
		{"orders-?", "orders-ab", false},
		{"*orders*", "github.com/acme/orders", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"", "", true},
		{"", "x", false},
	} {
		if got := Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestSelector(t *testing.T) {
	p := &Process{Pid: 42, Exe: "/srv/bin/orders", Module: "github.com/acme/orders", MainPackage: "github.com/acme/orders/cmd/orders"}
	for _, tc := range []struct {
		name string
		sel  Selector
		want bool
	}{
		{"empty matches all", Selector{}, true},
		{"exe name", Selector{Processes: []string{"orders"}}, true},
		{"module glob", Selector{Processes: []string{"github.com/acme/*"}}, true},
		{"main package", Selector{Processes: []string{"*/cmd/orders"}}, true},
		{"other", Selector{Processes: []string{"payments"}}, false},
		{"pid", Selector{Pids: []int{41, 42}}, true},
		{"other pid", Selector{Pids: []int{41}}, false},
		{"pid and process", Selector{Pids: []int{42}, Processes: []string{"payments"}}, false},
	} {
		if got := tc.sel.MatchProcess(p); got != tc.want {
			t.Errorf("%s: MatchProcess = %v, want %v", tc.name, got, tc.want)
		}
	}
	s := Selector{Hosts: []string{"orders-*"}}
	if !s.MatchHost("orders-a") || s.MatchHost("payments-a") {
		t.Error("host globs")
	}
}

func TestParseLogMessage(t *testing.T) {
	segs, err := ParseLogMessage("total={o.Total} for {{literal}} {x}!")
	if err != nil {
		t.Fatal(err)
	}
	want := []LogSegment{{Text: "total="}, {Expr: "o.Total"}, {Text: " for {literal} "}, {Expr: "x"}, {Text: "!"}}
	if len(segs) != len(want) {
		t.Fatalf("segments = %+v, want %+v", segs, want)
	}
	for i := range want {
		if segs[i] != want[i] {
			t.Fatalf("segment %d = %+v, want %+v", i, segs[i], want[i])
		}
	}
	for _, bad := range []string{"{unclosed", "stray }", "{a +}", "{}"} {
		if _, err := ParseLogMessage(bad); AsError(err) == nil || AsError(err).Code != CodeBadCondition {
			t.Errorf("ParseLogMessage(%q) = %v, want a %s error", bad, err, CodeBadCondition)
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() Spec {
		return Spec{ID: "tp-1", Location: Location{Path: "a/b.go", Line: 3}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Spec)
		code  string
		quote string
	}{
		{"bad id", func(s *Spec) { s.ID = "a.b" }, CodeBadRequest, "letters, digits"},
		{"no file", func(s *Spec) { s.Location.Path = "" }, CodeBadRequest, "has no file"},
		{"bad line", func(s *Spec) { s.Location.Line = 0 }, CodeBadRequest, "lines start at 1"},
		{"empty glob", func(s *Spec) { s.Selector.Hosts = []string{""} }, CodeBadRequest, "empty glob"},
		{"bad condition", func(s *Spec) { s.Condition = "x >" }, CodeBadCondition, "not a Go expression"},
		{"bad expr", func(s *Spec) { s.Capture.Exprs = []string{"a["} }, CodeBadCondition, "capture expression"},
		{"bad log", func(s *Spec) { s.LogMessage = "{a" }, CodeBadCondition, "never closed"},
		{"hit condition % 0", func(s *Spec) { s.HitCondition = "% 0" }, CodeBadCondition, "divides by zero"},
		{"hit condition misread", func(s *Spec) { s.HitCondition = ">  5" }, CodeBadCondition, "an operator and a number"},
		{"hit condition word", func(s *Spec) { s.HitCondition = "five" }, CodeBadCondition, "a number of hits"},
		{"hit condition too large", func(s *Spec) { s.HitCondition = "99999999999999999999" }, CodeBadCondition, "too large"},
		{"negative rate", func(s *Spec) { s.Limits.MaxHitsPerSecond = -1 }, CodeBadRequest, "limits.maxHitsPerSecond is -1"},
		{"negative depth", func(s *Spec) { s.Capture.StackDepth = -2 }, CodeBadRequest, "capture.stackDepth is -2"},
	} {
		s := good()
		tc.edit(&s)
		e := AsError(s.Validate())
		if e == nil || e.Code != tc.code || !strings.Contains(e.Message, tc.quote) {
			t.Errorf("%s: Validate = %v, want %s containing %q", tc.name, e, tc.code, tc.quote)
		}
	}
	s := good()
	if err := s.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, hc := range []string{"5", "== 5", ">=10", " > 1 ", "% 2", "!= 0"} {
		s := good()
		s.HitCondition = hc
		if err := s.Validate(); err != nil {
			t.Errorf("hit condition %q: %v", hc, err)
		}
	}
	s.Limits.ExpiresAt = time.Now().Add(-time.Second)
	if !s.Expired(time.Now()) {
		t.Error("a spec past its expiry is not expired")
	}
}
