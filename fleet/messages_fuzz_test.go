package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The fuzz targets of the wire: every message decoder, tracepoint spec
// validation, log messages and globs. Their seeds run in plain `go test`;
// `make fuzz` runs each for FUZZTIME.

// messageKinds are every message fleet decodes off the wire, with the name
// its receiver gives it in errors.
var messageKinds = []struct {
	what string
	new  func() Message
}{
	{"tracepoint spec", func() Message { return new(Spec) }},
	{"status", func() Message { return new(Status) }},
	{"hit", func() Message { return new(Hit) }},
	{"profile", func() Message { return new(Profile) }},
	{"heartbeat", func() Message { return new(Heartbeat) }},
	{"profile request", func() Message { return new(Request) }},
	{"attach request", func() Message { return new(AttachRequest) }},
	{"attach reply", func() Message { return new(AttachReply) }},
	{"createTracepoint reply", func() Message { return new(CreateTracepointReply) }},
	{"clearTracepoint request", func() Message { return new(ClearTracepointRequest) }},
	{"clearTracepoint reply", func() Message { return new(ClearTracepointReply) }},
	{"error reply", func() Message { return new(ErrorReply) }},
}

// seedMessages are well-formed messages of every kind, by index in
// messageKinds, with every field set.
func seedMessages() map[int]Message {
	when := time.Date(2026, 11, 26, 4, 0, 0, 123456789, time.UTC)
	spec := &Spec{
		ID: "tp-1",
		Location: Location{Module: "github.com/acme/orders", Path: "internal/pay/charge.go", Line: 42, Revision: "0123456789abcdef",
			Lines: map[string]int{"fedcba9876543210": 40}, Paths: map[string]string{"fedcba9876543210": "pay/charge.go"}, Refused: map[string]string{"aaaaaaaa": "the line changed"}},
		Selector:  Selector{Hosts: []string{"orders-*"}, Processes: []string{"github.com/acme/*"}, Pids: []int{7}},
		Condition: "amount > 100", HitCondition: ">= 2", LogMessage: "charging {req.Customer} {{literal}}",
		Capture: Capture{Args: true, Locals: true, Exprs: []string{"len(items)"}, StackDepth: 8, MaxString: 64, MaxArray: 8, MaxDepth: 2, MaxVariable: 32},
		Limits:  Limits{MaxHitsPerSecond: 50, MaxHits: 10, ExpiresAt: when}, Owner: "dap-1", Created: when,
	}
	ref := ProcessRef{Exe: "orders", Module: "github.com/acme/orders", MainPackage: "github.com/acme/orders/cmd/orders", Revision: "0123456789abcdef", Modified: true}
	pl := Placement{Pid: 7, File: "/src/charge.go", Line: 42, Function: "pay.Charge", PCs: []uint64{0x4a0000}, Error: &Error{Code: CodeNoCode, Message: "no code"}}
	vars := []Variable{{Name: "req", Type: "*Req", Value: "{…}", Children: []Variable{{Name: "Token", Type: "string", Value: "<redacted>"}}, Unreadable: ""}}
	proc := Process{Pid: 7, Exe: "/usr/bin/orders", Cmdline: []string{"orders", "-v"}, Module: "m", MainPackage: "m/cmd", GoVersion: "go1.26.8",
		Revision: "abc", Modified: true, VCSTime: "2026-11-25T00:00:00Z", ContainerID: strings.Repeat("a", 64), Attached: true, Tracepoints: []string{"tp-1"}, Files: []string{"a.go"}}
	return map[int]Message{
		0: spec,
		1: &Status{Tracepoint: "tp-1", Host: "h", Pid: 7, Process: ref, State: StateThrottled, Message: "m", Placement: &pl, Hits: 3, Dropped: 1, Updated: when},
		2: &Hit{Tracepoint: "tp-1", Host: "h", Pid: 7, Process: ref, Goroutine: 9, Time: when.UnixNano(), File: "a.go", Line: 3, Function: "main.f",
			Args: vars, Locals: vars, Exprs: vars, Stack: []Frame{{Function: "main.f", File: "a.go", Line: 3, PC: 1}}, Message: "m", Dropped: 2, Errors: []string{"e"}, Seq: 5, ServerTime: when},
		3:  &Profile{Host: HostInfo{Name: "h", OS: "linux", Arch: "amd64", Kernel: "6.1", CPUs: 2, AgentVersion: "v", Backends: []string{"delve"}, Started: when}, Processes: []Process{proc}, Error: &Error{Code: CodeInternal, Message: "x"}},
		4:  &Heartbeat{Host: "h", Updated: when, Every: Duration(5 * time.Second)},
		5:  &Request{Files: true},
		6:  &AttachRequest{Pid: 7},
		7:  &AttachReply{Pid: 7, Attached: true, Error: &Error{Code: CodeAttach, Message: "m"}},
		8:  &CreateTracepointReply{ID: "tp-1", Placements: []Placement{pl}, Error: &Error{Code: CodeNoProcess, Message: "m"}},
		9:  &ClearTracepointRequest{ID: "tp-1"},
		10: &ClearTracepointReply{ID: "tp-1", Error: &Error{Code: CodeBadRequest, Message: "m"}},
		11: &ErrorReply{Error: &Error{Code: CodeBadVersion, Message: "m"}},
	}
}

// FuzzDecode feeds every decoder arbitrary payloads. A payload is refused
// with a coded error naming the message, or accepted; an accepted message
// encodes (Encode panics on what it cannot write), and decodes again to the
// same message.
func FuzzDecode(f *testing.F) {
	seeds := seedMessages()
	for i := range messageKinds {
		good := Encode(seeds[i])
		f.Add(uint8(i), good)
		f.Add(uint8(i), bytes.Replace(good, []byte(`"v":1`), []byte(`"v":2`), 1))
		f.Add(uint8(i), append(append([]byte{}, good...), `{}`...))
		f.Add(uint8(i), good[:len(good)/2])
		f.Add(uint8(i), []byte(`{"v":1,"unknown":true}`))
	}
	f.Add(uint8(0), []byte(``))
	f.Add(uint8(0), []byte(`[`))
	f.Add(uint8(0), []byte(`null`))
	f.Add(uint8(0), []byte(`{"v":1,"ID":"x","location":{"path":"a.go","line":1}}`))
	f.Add(uint8(1), []byte(`{"v":1,"updated":"10000-01-01T00:00:00Z"}`))
	f.Add(uint8(4), []byte(`{"v":1,"every":"-2562047h47m16.854775808s"}`))
	f.Add(uint8(4), []byte(`{"v":1,"every":5}`))
	f.Add(uint8(2), []byte(`{"v":1,"args":[{"name":"a","children":[{"name":"b","children":[{"name":"c"}]}]}]}`))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		k := messageKinds[int(kind)%len(messageKinds)]
		v := k.new()
		err := Decode(data, k.what, v)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != CodeBadRequest && e.Code != CodeBadVersion) || !strings.Contains(e.Message, k.what) {
				t.Fatalf("refusing a %s: %#v, want a %s or %s error naming it", k.what, err, CodeBadRequest, CodeBadVersion)
			}
			return
		}
		once := Encode(v)
		again := k.new()
		if err := Decode(once, k.what, again); err != nil {
			t.Fatalf("an accepted %s does not decode once encoded: %v\npayload: %q\nencoded: %s", k.what, err, data, once)
		}
		if twice := Encode(again); !bytes.Equal(once, twice) {
			t.Fatalf("a %s changes on a second round trip:\n%s\n%s", k.what, once, twice)
		}
		if s, ok := v.(*Spec); ok {
			checkSpec(t, s)
		}
	})
}

// checkSpec runs what agents run on a decoded spec; none of it may panic.
func checkSpec(t *testing.T, s *Spec) {
	if err := s.Validate(); err != nil {
		if e := AsError(err); e.Code == CodeInternal || e.Message == "" {
			t.Fatalf("Validate: %#v, want a coded error", err)
		}
		return
	}
	for _, rev := range []string{"", "0123456", "0123456789abcdef", s.Location.Revision} {
		loc, _, ferr := s.Location.For(rev, false)
		if ferr != nil && ferr.Code != CodeLineChanged {
			t.Fatalf("Location.For(%q): %v", rev, ferr)
		}
		if ferr == nil && loc.Line <= 0 {
			t.Fatalf("Location.For(%q) of a valid spec gives line %d", rev, loc.Line)
		}
		s.Location.For(rev, true)
	}
	s.Expired(time.Now())
	s.Selector.MatchHost("orders-a")
	s.Selector.MatchProcess(&Process{Pid: 7, Exe: "/usr/bin/orders", Module: "github.com/acme/orders"})
}

// FuzzDecodeHits feeds the hit stream's one decoder arbitrary messages. A
// message is refused with a coded error, or it yields at least one hit,
// each of the hits' version, numbered by its place in a batch.
func FuzzDecodeHits(f *testing.F) {
	hit := Encode(seedMessages()[2])
	f.Add(hit)
	f.Add(EncodeHitBatch([][]byte{hit, hit, hit}))
	f.Add([]byte(`{"v":3,"hits":[]}`))
	f.Add([]byte(`{ "v": 3, "hits": [` + string(hit) + `] }`))
	f.Add([]byte(`{"v":3,"hits":[{"v":3,"hits":[]}]}`))
	packed := PackHitBatch([][]byte{hit, hit, hit})
	f.Add(packed)
	f.Add(bytes.Replace(packed, []byte(`{"v":4,`), []byte(`{ "v": 4, `), 1))
	f.Add([]byte(`{"v":4,"s2":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hits, err := DecodeHits(data, nil)
		if err != nil {
			if AsError(err) == nil || AsError(err).Code == "" {
				t.Fatalf("DecodeHits(%q): an error without a code: %v", data, err)
			}
			return
		}
		if len(hits) == 0 {
			t.Fatalf("DecodeHits(%q): no hit and no error", data)
		}
		for i, h := range hits {
			if h.V != HitVersion || len(hits) > 1 && h.Part != i {
				t.Fatalf("DecodeHits(%q): hit %d has version %d, part %d", data, i, h.V, h.Part)
			}
		}
	})
}

// FuzzValidate builds specs from fuzzed fields: Validate never panics, its
// errors are coded, and what it accepts is what backends can use.
func FuzzValidate(f *testing.F) {
	f.Add("tp-1", "internal/pay/charge.go", 42, "amount > 100", ">= 10", "charging {req.Customer}", "len(items)", "orders-*", 8, 50)
	f.Add("tp 1", "", 0, "x >", "% 0", "{a", "a[", "", -1, -1)
	f.Add("a", "a.go", 1, "", ">  5", "{{}}", "f(x", "*", 0, 0)
	f.Add("a", "a.go", 1, "((((((((((((((((((((x))))))))))))))))))))", "99999999999999999999", "}", "x.(type)", "?", 1<<30, 1<<30)
	f.Add("a", "a.go", 1, "a && b || !c", "!= 3", "x={ x }", "m[\"k\"]", "a*b?c", 0, 0)
	f.Fuzz(func(t *testing.T, id, file string, line int, cond, hitCond, logMsg, expr, glob string, depth, rate int) {
		s := Spec{
			ID: id, Location: Location{Path: file, Line: line},
			Selector:  Selector{Hosts: []string{glob}, Processes: []string{glob}},
			Condition: cond, HitCondition: hitCond, LogMessage: logMsg,
			Capture: Capture{Args: true, Exprs: []string{expr}, StackDepth: depth},
			Limits:  Limits{MaxHitsPerSecond: rate},
		}
		err := s.Validate()
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" || e.Code == CodeInternal || e.Message == "" {
				t.Fatalf("Validate: %#v, want a coded error with a message", err)
			}
			return
		}
		switch {
		case Token(s.ID) != s.ID || s.ID == "":
			t.Fatalf("accepted id %q", s.ID)
		case s.Location.Line <= 0 || s.Location.Path == "":
			t.Fatalf("accepted location %v", s.Location)
		case depth < 0 || rate < 0:
			t.Fatalf("accepted negative limits: depth %d, rate %d", depth, rate)
		case glob == "":
			t.Fatal("accepted an empty glob")
		}
		if hitCond != "" {
			op, n := readHitCondition(hitCond)
			if op == "%" && n == 0 {
				t.Fatalf("accepted hit condition %q, which divides by zero", hitCond)
			}
			if n < 0 || (op != "" && !strings.Contains(" == != < <= > >= % ", " "+op+" ")) {
				t.Fatalf("accepted hit condition %q, which Delve cannot read as written", hitCond)
			}
		}
		if _, err := ParseLogMessage(s.LogMessage); err != nil {
			t.Fatalf("accepted log message %q: %v", s.LogMessage, err)
		}
		checkSpec(t, &s)
	})
}

// delveHitCondition is Delve's own hit condition pattern (pkg/proc,
// hitConditionRegex), found anywhere in the string as Delve does.
var delveHitCondition = regexp.MustCompile(`(([=><%!])+|)( |)((\d|_)+)`)

// readHitCondition reads hc as Delve does: the operator and number it
// finds; n < 0 if it finds none or cannot read the number.
func readHitCondition(hc string) (op string, n int) {
	m := delveHitCondition.FindStringSubmatch(strings.TrimSpace(hc))
	if m == nil {
		return "", -1
	}
	if _, err := fmt.Sscanf(m[4], "%d", &n); err != nil || strings.Contains(m[4], "_") {
		return "", -1
	}
	if strings.TrimSpace(hc) != m[0] {
		return "", -1 // Delve would read a part of it only
	}
	return m[1], n
}

// FuzzLogMessage checks that parsing a log message and writing its segments
// back gives the same segments.
func FuzzLogMessage(f *testing.F) {
	for _, s := range []string{"", "total={total}", "{{literal}} {a.b} }}", "{", "}", "{a}{b}", "{ x }", "{{{a}}}", "{f(\"}\")}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		segs, err := ParseLogMessage(msg)
		if err != nil {
			if AsError(err).Code != CodeBadCondition {
				t.Fatalf("ParseLogMessage(%q): %#v, want %s", msg, err, CodeBadCondition)
			}
			return
		}
		var b strings.Builder
		for _, s := range segs {
			if s.Expr != "" {
				b.WriteString("{" + s.Expr + "}")
			} else {
				b.WriteString(strings.NewReplacer("{", "{{", "}", "}}").Replace(s.Text))
			}
		}
		again, err := ParseLogMessage(b.String())
		if err != nil || fmt.Sprint(again) != fmt.Sprint(segs) {
			t.Fatalf("%q parses to %q; written back as %q it parses to %q, %v", msg, segs, b.String(), again, err)
		}
	})
}

// FuzzGlob compares Glob with a regular expression built from the pattern,
// on ASCII (Glob's '?' matches a byte).
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"github.com/acme/*", "github.com/acme/orders/cmd"}, {"orders-?", "orders-a"}, {"*a*a*a*b", strings.Repeat("a", 64)}, {"", ""}, {"**", "x"}, {"a*", "b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !ascii(pattern) || !ascii(s) {
			return
		}
		var re strings.Builder
		re.WriteString(`(?s)\A`)
		for _, c := range pattern {
			switch c {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString(`\z`)
		if got, want := Glob(pattern, s), regexp.MustCompile(re.String()).MatchString(s); got != want {
			t.Fatalf("Glob(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
