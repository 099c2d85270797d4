package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Attribute documents one setting of a front end: an attribute of the debug
// adapter's attach configuration or a setting of the language server. Each
// front end keeps one list of them, which editors are checked against
// (editors/) and by which it decodes what editors send, so the three cannot
// drift.
type Attribute struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // JSON Schema type: string, boolean, integer, object, array
	Description string `json:"description"`
	Example     any    `json:"example,omitempty"`
	// Enum, if set, lists the only strings the attribute takes; editors
	// offer them as a list.
	Enum []string `json:"enum,omitempty"`
}

// CredentialAttributes are the NATS credentials every front end takes, the
// credentials file named credsName: the attach configuration has called it
// creds and the language server credentials since their first releases.
func CredentialAttributes(credsName string) []Attribute {
	return []Attribute{
		{Name: credsName, Type: "string", Description: "NATS credentials file (.creds).", Example: "/home/me/.nats/user.creds"},
		{Name: "inboxPrefix", Type: "string", Description: "Where replies arrive, in place of _INBOX: the prefix the server's permissions give the user (_INBOX_<user> in deploy/nats.conf).", Example: "_INBOX_alice"},
		{Name: "nkey", Type: "string", Description: "NATS NKey seed file.", Example: "/home/me/.nats/user.nk"},
		{Name: "user", Type: "string", Description: "NATS user name.", Example: "alice"},
		{Name: "password", Type: "string", Description: "NATS password (needs user).", Example: "s3cret"},
		{Name: "token", Type: "string", Description: "NATS authentication token.", Example: "s3cret"},
		{Name: "tls", Type: "object", Description: "TLS files: {cert, key, ca}; cert and key together.", Example: map[string]string{"ca": "/etc/riptrace/ca.pem"}},
	}
}

// Decode decodes v, the attribute's JSON value, into dst strictly: a value
// of another type, or an object with a field dst does not have, is an error
// that says what to write, from the attribute's type, example and
// description. A single string is taken as a list of one for a []string.
func (a Attribute) Decode(v json.RawMessage, dst any) error {
	if _, list := dst.(*[]string); list && bytes.HasPrefix(v, []byte(`"`)) {
		v = append(append(json.RawMessage{'['}, v...), ']')
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if s, ok := dst.(*string); ok && len(a.Enum) > 0 && !slices.Contains(a.Enum, *s) {
			return fmt.Errorf("must be one of %s, got %q. %s", quoteList(a.Enum), *s, a.Description)
		}
		return nil
	}
	example := ""
	if a.Example != nil {
		b, _ := json.Marshal(a.Example)
		example = ", for example " + string(b)
	}
	// The decoder's words only for a mistake inside the value: an
	// unknown field, a field of the wrong type.
	if ute := (*json.UnmarshalTypeError)(nil); !errors.As(err, &ute) || ute.Field != "" {
		example += fmt.Sprintf(" (%v)", err)
	}
	want := map[string]string{"string": "a string", "boolean": "true or false", "integer": "a whole number", "array": "a list", "object": "an object"}[a.Type]
	return fmt.Errorf("must be %s%s. %s", want, example, a.Description)
}

// quoteList writes ["a", "b", "c"] as "a", "b" or "c".
func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	if len(q) < 2 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
