package web

import (
	"encoding/json"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// FuzzDecode feeds the API's request decoders arbitrary bodies: they never
// panic, refuse with a fleet error carrying a code and a message, and what
// they accept is one object that encodes back to what decodes the same.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"module":"example.com/revs","revision":"0123456789abcdef0123456789abcdef01234567","path":"main.go","line":12}`,
		`{"module":"m","revision":"x","line":-1,"hosts":["a*"],"maxHits":3,"backend":"ebpf","group":"o.ID"}`,
		`{"module":"m"}`, `{"module":`, `[]`, `null`, `{"module":"m"}{}`, `{"extra":1}`, "\x00", `{"line":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var q TracepointRequest
		if err := decodeBytes(b, &q); err != nil {
			fe := fleet.AsError(err)
			if fe.Code != fleet.CodeBadRequest || fe.Message == "" {
				t.Fatalf("refused with %+v, want code bad_request and a message", fe)
			}
		} else {
			if verr := q.validate(); verr != nil && fleet.AsError(verr).Message == "" {
				t.Fatal("validation error without a message")
			}
			again, _ := json.Marshal(q)
			var q2 TracepointRequest
			if err := decodeBytes(again, &q2); err != nil {
				t.Fatalf("re-encoded request %s refused: %v", again, err)
			}
		}
		var fr FetchRequest
		decodeBytes(b, &fr)
		var er EditRequest
		if err := decodeBytes(b, &er); err != nil && fleet.AsError(err).Code != fleet.CodeBadRequest {
			t.Fatalf("edit request refused with %+v, want code bad_request", err)
		}
	})
}
