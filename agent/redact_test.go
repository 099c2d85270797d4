package agent

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

func TestRedactHit(t *testing.T) {
	r := DefaultRedactor()
	h := fleet.Hit{
		Args: []fleet.Variable{{Name: "req", Type: "*main.Login", Value: `*main.Login {User: "bob", Password: "hunter2"}`, Children: []fleet.Variable{
			{Name: "User", Type: "string", Value: `"bob"`},
			{Name: "Password", Type: "string", Value: `"hunter2"`},
		}}},
		Locals: []fleet.Variable{
			{Name: "apiKey", Type: "string", Value: `"k-123"`},
			{Name: "hdr", Type: "string", Value: `"Bearer abc.defghijk"`},
			{Name: "jwt", Type: "string", Value: `"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"`},
			{Name: "n", Type: "int", Value: "3"},
			{Name: "m", Type: "map[string]string", Value: `map[string]string ["cookie": "s=1"]`, Children: []fleet.Variable{{Name: `["cookie"]`, Type: "string", Value: `"s=1"`}}},
		},
	}
	r.Hit(&h)
	req := h.Args[0]
	if req.Children[1].Value != Redacted || req.Children[0].Value != `"bob"` || strings.Contains(req.Value, "hunter2") {
		t.Fatalf("req = %+v", req)
	}
	for i, want := range []string{Redacted, Redacted, Redacted, "3"} {
		if got := h.Locals[i].Value; got != want {
			t.Errorf("local %s = %s, want %s", h.Locals[i].Name, got, want)
		}
	}
	if m := h.Locals[4]; m.Children[0].Value != Redacted || strings.Contains(m.Value, "s=1") {
		t.Errorf("map with a cookie key = %+v", m)
	}
	var none Redactor
	h2 := fleet.Hit{Locals: []fleet.Variable{{Name: "password", Value: `"x"`}}}
	none.Hit(&h2)
	if h2.Locals[0].Value != `"x"` {
		t.Error("the zero Redactor redacted")
	}
}

// TestRedactDefaults holds the default patterns to the secrets they were
// found to miss: an X-Api-Key header, a JWT inside a longer string, and an
// Authorization header not at the start of the value; in strings, map
// entries, struct fields, and composites cut off below the value tree.
func TestRedactDefaults(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
	secrets := []string{jwt, "Bearer abcdefgh12345678", "xk-9f8e7d6c", "sk_live_51Habc", "AKIAIOSFODNN7EXAMPLE", "Basic dXNlcjpwYXNzd29yZA=="}
	for _, tc := range []struct {
		name string
		v    fleet.Variable
	}{
		{"jwt in a string", fleet.Variable{Name: "note", Type: "string", Value: `"session=` + jwt + `; path=/"`}},
		{"bearer inside a string", fleet.Variable{Name: "raw", Type: "string", Value: `"GET / HTTP/1.1\r\nAuthorization: Bearer abcdefgh12345678\r\n"`}},
		{"basic after authorization", fleet.Variable{Name: "raw", Type: "string", Value: `"Authorization: Basic dXNlcjpwYXNzd29yZA=="`}},
		{"bearer cut short", fleet.Variable{Name: "raw", Type: "string", Value: `"GET / HTTP/1.1\r\nAuthorization: Bearer abcd...+22 more"`}},
		{"jwt cut short", fleet.Variable{Name: "raw", Type: "string", Value: `"GET /?t=eyJhbGciOiJIUzI1NiJ9.eyJzd...+40 more"`}},
		{"service key prefix", fleet.Variable{Name: "k", Type: "string", Value: `"sk_live_51Habc"`}},
		{"aws key", fleet.Variable{Name: "k", Type: "string", Value: `"id=AKIAIOSFODNN7EXAMPLE"`}},
		{"header map", fleet.Variable{Name: "h", Type: "net/http.Header", Value: `net/http.Header ["X-Api-Key": ["xk-9f8e7d6c"], "Accept": ["*/*"]]`, Children: []fleet.Variable{
			{Name: `["Accept"]`, Type: "[]string", Value: `[]string len: 1, cap: 1, ["*/*"]`},
			{Name: `["X-Api-Key"]`, Type: "[]string", Value: `[]string len: 1, cap: 1, ["xk-9f8e7d6c"]`},
		}}},
		{"header map entry with a bearer", fleet.Variable{Name: "h", Type: "map[string]string", Value: `map[string]string ["X-Forward": "Bearer abcdefgh12345678"]`, Children: []fleet.Variable{
			{Name: `["X-Forward"]`, Type: "string", Value: `"Bearer abcdefgh12345678"`},
		}}},
		{"map keyed by jwts", fleet.Variable{Name: "sessions", Type: "map[string]string", Value: `map[string]string ["` + jwt + `": "bob"]`, Children: []fleet.Variable{
			{Name: `["` + jwt + `"]`, Type: "string", Value: `"bob"`},
		}}},
		{"struct field holding a jwt", fleet.Variable{Name: "c", Type: "main.C", Value: `main.C {Note: "session=` + jwt + `"}`, Children: []fleet.Variable{
			{Name: "Note", Type: "string", Value: `"session=` + jwt + `"`},
		}}},
		{"struct cut off below the tree", fleet.Variable{Name: "c", Type: "main.Outer", Value: `main.Outer {In: main.In {XApiKey: "xk-9f8e7d6c"}}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fleet.Hit{Locals: []fleet.Variable{tc.v}}
			DefaultRedactor().Hit(&h)
			got := h.Locals[0]
			for _, s := range secrets {
				if strings.Contains(got.Value, s) || strings.Contains(got.Value, strings.TrimPrefix(s, "Bearer ")) {
					t.Errorf("%s left the host: %+v", s, got)
				}
				for _, c := range got.Children {
					if strings.Contains(c.Value, s) || strings.Contains(c.Name, s) {
						t.Errorf("%s left the host: child %+v", s, c)
					}
				}
			}
			if !strings.Contains(got.Value, Redacted) {
				t.Errorf("value = %q, want %s in it", got.Value, Redacted)
			}
		})
	}
	// What is not a secret shows.
	for _, v := range []string{`"bearer of good news"`, `"a long string cut...+12 more"`, `"the basic settings"`, `"eyJ alone"`, `main.T {Author: "ann"}`} {
		h := fleet.Hit{Locals: []fleet.Variable{{Name: "x", Value: v}}}
		DefaultRedactor().Hit(&h)
		if h.Locals[0].Value != v {
			t.Errorf("%s was redacted", v)
		}
	}
}

// TestRedactCheck refuses the expressions that read a redacted name, or
// memory by address, wherever they stand in a spec.
func TestRedactCheck(t *testing.T) {
	redacted := []string{
		`password == "hunter2"`,
		`password[0] == 104`,
		`password[1:3] == "un"`,
		`len(password) == 7`,
		`[]byte(password)[0] == 104`,
		`string(password) != ""`,
		`cfg.APIKey`,
		`(cfg).Password[0]`,
		`cfg.Inner.Token != ""`,
		`hdr["Authorization"][0]`,
		`hdr["X-Api-Key"]`,
		`hdr["Author" + "ization"]`,
		`req.Header["Cookie"]`,
		`runtime.frame(1).password`,
		`main.apiKey`,
	}
	unsafe := []string{
		`*(*string)(uintptr(cfg)+16)`,
		`*(*string)(0xc000010000)`,
		`(*[8]byte)(0x1000)[0]`,
		`unsafe.Pointer(cfg)`,
		`RAX == 5`,
		`__RSP`,
		`X0`,
	}
	allowed := []string{`n == 3`, `cfg.Host`, `len(hdr)`, `hdr["Accept"]`, `it.(*main.Item).ID`, `seq % 2 == 0`}
	r := DefaultRedactor()
	check := func(e string) map[string]error {
		return map[string]error{
			"condition":   r.Check(&fleet.Spec{ID: "t", Condition: e}),
			"expression":  r.Check(&fleet.Spec{ID: "t", Capture: fleet.Capture{Exprs: []string{"n", e}}}),
			"log message": r.Check(&fleet.Spec{ID: "t", LogMessage: "n={n} x={" + e + "}"}),
		}
	}
	for code, es := range map[string][]string{fleet.CodeRedacted: redacted, fleet.CodeUnsafeExpr: unsafe} {
		for _, e := range es {
			for where, err := range check(e) {
				if fe := fleet.AsError(err); fe == nil || fe.Code != code || !strings.Contains(fe.Message, where) {
					t.Errorf("%s %q: %v, want %s", where, e, err, code)
				}
			}
		}
	}
	for _, e := range allowed {
		for where, err := range check(e) {
			if err != nil {
				t.Errorf("%s %q refused: %v", where, e, err)
			}
		}
	}
	// Reading by address is refused even where nothing is redacted, and at
	// declare time.
	var none Redactor
	if err := none.Check(&fleet.Spec{ID: "t", Condition: `password == "x"`}); err != nil {
		t.Errorf("the zero Redactor refused a name: %v", err)
	}
	spec := fleet.Spec{ID: "t", Location: fleet.Location{Path: "a.go", Line: 1}, Capture: fleet.Capture{Exprs: []string{unsafe[0]}}}
	if fe := fleet.AsError(spec.Validate()); fe == nil || fe.Code != fleet.CodeUnsafeExpr {
		t.Errorf("Validate of %q: %v, want %s", unsafe[0], fe, fleet.CodeUnsafeExpr)
	}
	if _, err := NewRedactor("(", ""); err == nil {
		t.Error("a bad pattern compiled")
	}
}

// TestLogMessageRedacted writes a log message from values once redacted: a
// struct shows its secret fields as <redacted>, a JWT local too.
func TestLogMessageRedacted(t *testing.T) {
	spec := fleet.Spec{LogMessage: "cfg={cfg} jwt={tok} n={n}", Capture: fleet.Capture{Exprs: []string{"n"}}}
	installed, lp := splitLog(spec)
	if installed.LogMessage != "" || strings.Join(installed.Capture.Exprs, ",") != "n,cfg,tok,n" || len(spec.Capture.Exprs) != 1 {
		t.Fatalf("installed %+v from %+v", installed, spec)
	}
	h := fleet.Hit{Exprs: []fleet.Variable{
		{Name: "n", Type: "int", Value: "3"},
		{Name: "cfg", Type: "main.Config", Value: `main.Config {Host: "db", APIKey: "sk-live-123"}`, Children: []fleet.Variable{
			{Name: "Host", Type: "string", Value: `"db"`},
			{Name: "APIKey", Type: "string", Value: `"sk-live-123"`},
		}},
		{Name: "tok", Type: "string", Value: `"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"`},
		{Name: "n", Type: "int", Value: "3"},
	}}
	DefaultRedactor().Hit(&h)
	lp.render(&h)
	want := `cfg=main.Config {Host: "db", APIKey: <redacted>} jwt=<redacted> n=3`
	if h.Message != want || len(h.Exprs) != 1 || h.Exprs[0].Name != "n" {
		t.Errorf("message %q and exprs %+v; want %q and n alone", h.Message, h.Exprs, want)
	}
	// A hit whose stack could not be read captured nothing, and says no
	// message.
	h = fleet.Hit{}
	lp.render(&h)
	if h.Message != "" || h.Exprs != nil {
		t.Errorf("empty hit rendered to %+v", h)
	}
}

// TestRedactValueStarts holds the values the redactor does not match
// against its value pattern (none of their bytes can start a match) to
// the pattern itself: for the default pattern and others, over the values
// of TestRedactDefaults cut at every byte and random strings made of the
// bytes that patterns start with, folded cases, and bytes past ASCII.
func TestRedactValueStarts(t *testing.T) {
	values := []string{"", "12345", "-7", "3.25", "true", "false", "ſk_live_x", "\xff", "KEY9", "\u212aey1"}
	for _, s := range []string{`"session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"`, `"Authorization: Basic dXNlcjpwYXNzd29yZA=="`,
		`"GET / HTTP/1.1\r\nAuthorization: Bearer abcd...+22 more"`, `"id=AKIAIOSFODNN7EXAMPLE"`, "-----BEGIN RSA PRIVATE KEY-----", `"sk-0123456789abcdefghijk"`} {
		for i := range len(s) {
			values = append(values, s[i:], s[:i])
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0123456789-+. :\"abeEkKsSyYxXjJ_\xc5\xbf\xe2\x84\xaa\xff"
	for range 20000 {
		b := make([]byte, rnd.IntN(12))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		values = append(values, string(b))
	}
	for _, pattern := range []string{DefaultRedactValues, `(?i)key\d+`, `\bsk-`, `x*`, `^$`, `[^a]b`, `.e`, `(?i)s`, `a|b?`, `(ab)+c|d{2,}`} {
		r, err := NewRedactor("", pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if got, want := r.secretValue(v), r.Values.MatchString(v); got != want {
				t.Fatalf("pattern %q: secretValue(%q) = %v, MatchString %v", pattern, v, got, want)
			}
		}
	}
	if r := DefaultRedactor(); r.valueStarts == nil || r.valueStarts['1'] {
		t.Errorf("the default pattern's starts are %v: a number would be matched", r.valueStarts)
	}
}
