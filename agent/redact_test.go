package agent

import (
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
			{Name: "hdr", Type: "string", Value: `"Bearer abc.def"`},
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

func TestRedactSpec(t *testing.T) {
	r := DefaultRedactor()
	spec := fleet.Spec{LogMessage: "login {req.User} with {req.Password} {{literal}}", Capture: fleet.Capture{Exprs: []string{"req.User", "req.APIKey", "len(token)"}}}
	got := r.Spec(spec)
	if got.LogMessage != "login {req.User} with "+Redacted+" {{literal}}" {
		t.Errorf("log message = %q", got.LogMessage)
	}
	if len(got.Capture.Exprs) != 1 || got.Capture.Exprs[0] != "req.User" {
		t.Errorf("exprs = %v", got.Capture.Exprs)
	}
	if _, err := NewRedactor("(", ""); err == nil {
		t.Error("a bad pattern compiled")
	}
}
