package fleet

import (
	"errors"
	"testing"
)

// TestValidateRefusesReadsByAddress: at declare time, with no redaction
// names to go by, a client still refuses what reads memory by address, in
// every place an expression stands; names are left to the agent.
func TestValidateRefusesReadsByAddress(t *testing.T) {
	base := Spec{ID: "t", Location: Location{Path: "a.go", Line: 1}}
	for _, e := range []string{`*(*string)(uintptr(cfg)+16)`, `(*[4]byte)(0xc000010000)[0]`, `unsafe.Add(p, 8)`, `_RAX == 1`} {
		for where, s := range map[string]Spec{
			"condition":   {Condition: e},
			"expression":  {Capture: Capture{Exprs: []string{e}}},
			"log message": {LogMessage: "v={" + e + "}"},
		} {
			s.ID, s.Location = base.ID, base.Location
			var fe *Error
			if err := s.Validate(); !errors.As(err, &fe) || fe.Code != CodeUnsafeExpr {
				t.Errorf("%s %q: %v, want %s", where, e, err, CodeUnsafeExpr)
			}
		}
	}
	ok := base
	ok.Condition, ok.Capture.Exprs, ok.LogMessage = `password == "x"`, []string{`cfg.APIKey`, `it.(*main.Item).ID`}, "{hdr[\"Authorization\"]}"
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate refused names, which are the agent's to judge: %v", err)
	}
}
