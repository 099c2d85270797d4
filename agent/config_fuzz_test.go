package agent_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/agent"
)

// FuzzConfigFile: no file makes the parser panic or hang; a refusal is a
// *ConfigError naming the file, and what is accepted is usable.
func FuzzConfigFile(f *testing.F) {
	example, err := os.ReadFile("../docs/agent.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"", "host: a\n", "attach:\n  uids: [1000, bob]\n", "nats: &n {url: x}\nlog: *n\n",
		"deny: &d ['a']\nattach: {processes: *d}\n", "a: [[[[[[[[[[]]]]]]]]]]\n", "redact:\n  names: '(?i)pass('\n",
		"host: !!binary aGVsbG8=\n", "metrics: ':9464'\n", "attach:\n  uids: [0x10, 1_000, +5]\n", "<<: {host: a}\n",
		"- a\n- b\n", "host: a\n---\nhost: b\n", "? [a]\n: b\n", "redact: {off: true}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := agent.ParseConfigFile(data, "agent.yaml")
		if err != nil {
			var ce *agent.ConfigError
			if !errors.As(err, &ce) || ce.File != "agent.yaml" || ce.Msg == "" || !strings.HasPrefix(err.Error(), "agent.yaml") {
				t.Fatalf("refusal %#v is not a ConfigError naming the file", err)
			}
			return
		}
		r := c.Redactor() // panics on a pattern check let through
		if c.Redact.Off && (r.Names != nil || r.Values != nil) {
			t.Fatal("redact.off yet a redactor that redacts")
		}
		for _, u := range c.Attach.UIDs {
			if u < 0 {
				t.Fatalf("accepted uid %d", u)
			}
		}
		for _, g := range append(append([]string{}, c.Attach.Processes...), c.Deny...) {
			if strings.TrimSpace(g) == "" {
				t.Fatal("accepted an empty glob")
			}
		}
	})
}
