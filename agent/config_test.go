package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/agent"
)

// The example in docs/ is the documentation of every key: it must load and
// say what it says.
func TestConfigExample(t *testing.T) {
	c, err := agent.LoadConfigFile("../docs/agent.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "orders-a" || c.NATS.URL != "nats://nats.internal:4222" || c.NATS.Creds != "/etc/riptrace/agent.creds" || c.NATS.TLS.CA != "/etc/riptrace/ca.pem" || c.NATS.InboxPrefix != "_INBOX_agent-orders-a" {
		t.Errorf("host and nats = %q %+v", c.Host, c.NATS)
	}
	if want := []string{"github.com/acme/*", "orders"}; !reflect.DeepEqual(c.Attach.Processes, want) {
		t.Errorf("attach.processes = %q, want %q", c.Attach.Processes, want)
	}
	if want := []int{1000, 1001}; !reflect.DeepEqual(c.Attach.UIDs, want) {
		t.Errorf("attach.uids = %v, want %v", c.Attach.UIDs, want)
	}
	if want := []string{"*/internal/crypto/*", "main.(*Vault).*"}; !reflect.DeepEqual(c.Deny, want) {
		t.Errorf("deny = %q, want %q", c.Deny, want)
	}
	if c.Metrics != "127.0.0.1:9464" || !c.Log.JSON || c.Redact.Off || c.Redact.Names == nil || c.Redact.Values != nil {
		t.Errorf("metrics, log, redact = %q %+v %+v", c.Metrics, c.Log, c.Redact)
	}
	if c.Buffer.Hits != agent.DefaultBufferHits || c.Buffer.Bytes != agent.DefaultBufferBytes {
		t.Errorf("buffer = %+v, want the defaults it documents", c.Buffer)
	}
	r := c.Redactor()
	if !r.Names.MatchString("customerSSN") || r.Values == nil || r.Values.String() != agent.DefaultRedactValues {
		t.Errorf("redactor = %v / %v, want the file's names and the default values", r.Names, r.Values)
	}
	if got, want := c.Where("attach.uids"), fmt.Sprintf("agent.example.yaml:%d", lineOf(t, "../docs/agent.example.yaml", "  uids:")); !strings.HasSuffix(got, want) {
		t.Errorf("Where(attach.uids) = %q, want %s", got, want)
	}
}

func TestConfigEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# nothing yet\n", "---\n"} {
		c, err := agent.ParseConfigFile([]byte(in), "a.yaml")
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if c.Set("host") || c.Redactor().Names == nil {
			t.Errorf("%q: not the defaults: %+v", in, c)
		}
	}
}

// Every mistake names the file, the line and the key, and says what to write.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"host: a\nhots: b\n", []string{"a.yaml:2:", `unknown key "hots"`, "did you mean host?"}},
		{"attach:\n  uid: [1000]\n", []string{"a.yaml:2:", `"attach.uid"`, "--uid is written attach.uids"}},
		{"uids: [1000]\n", []string{"a.yaml:1:", `"uids"`, "attach.uids"}},
		{"processes: [x]\n", []string{"a.yaml:1:", "it belongs at attach.processes (attach: {processes: ...})"}},
		{"attach:\n  processes: orders\n", []string{"write processes: [\"orders\"]"}},
		{"log-json: true\n", []string{"a.yaml:1:", "--log-json is written log.json"}},
		{"nats:\n  url: x\n  tls:\n    cert: c.pem\n", []string{"a.yaml:4:", "nats.tls.cert", "without nats.tls.key"}},
		{"attach:\n  uids: [1000, bob]\n", []string{"a.yaml:2:", "attach.uids[1]", `"bob" is not a whole number`}},
		{"attach:\n  uids: [\"1000\"]\n", []string{"attach.uids[0]", "without quotes"}},
		{"attach:\n  uids: [-1]\n", []string{"attach.uids[0]", "-1 is not a uid"}},
		{"attach:\n  processes: orders\n", []string{"a.yaml:2:", "attach.processes", "want a list"}},
		{"attach:\n  processes: [\"\"]\n", []string{"attach.processes[0]", "empty glob"}},
		{"attach:\n  uids: []\n", []string{"a.yaml:2:", "attach.uids", "an empty list", "leave the key out"}},
		{"attach:\n  processes: []\n", []string{"a.yaml:2:", "attach.processes", "an empty list", "leave the key out"}},
		{"nats: nats://n:4222\n", []string{"a.yaml:1:", `want keys under it (url, prefix, creds, inboxPrefix, nkey, user, password, token, tls): write nats: {url: "nats://n:4222"}`}},
		{"attach: [1000]\n", []string{"a.yaml:1:", "attach:", "want keys under it (processes, uids)"}},
		{"deny: ['']\n", []string{"deny[0]", "empty glob"}},
		{"backend: bpf\n", []string{"a.yaml:1:", "backend", `"bpf" is not a backend`}},
		{"stopBudget: 1.5\n", []string{"a.yaml:1:", "stopBudget", "such as 0.1"}},
		{"stopBudget: ten\n", []string{"a.yaml:1:", "stopBudget", `"ten" is not a number`}},
		{"stop-budget: 0.1\n", []string{"a.yaml:1:", "--stop-budget is written stopBudget"}},
		{"redact:\n  names: '(?i)pass('\n", []string{"a.yaml:2:", "redact.names", "not a Go regular expression"}},
		{"redact:\n  off: yes\n", []string{"redact.off", `"yes" is not true or false`}},
		{"redact:\n  off: true\n  names: x\n", []string{"redact.names", "redact.off"}},
		{"metrics: 9464\n", []string{"a.yaml:1:", "metrics", "HOST:PORT"}},
		{"host: a\nhost: b\n", []string{"a.yaml:2:", "set twice (first on line 1)"}},
		{"host: [a, b]\n", []string{"a.yaml:1:", "host", "a list, want a single value"}},
		{"host: ''\n", []string{"host", "leave the key out"}},
		{"host: a\n  nats: b\n", []string{"a.yaml:2:", "not valid YAML"}},
		{"- host: a\n", []string{"a.yaml:1:", "a mapping of keys"}},
		{"host: a\n---\nhost: b\n", []string{"second YAML document"}},
		{"config: other.yaml\n", []string{"pass --config on the command line"}},
		{"nats:\n  password: x\n", []string{"nats.password", "add nats.user"}},
		{"nats:\n  inboxPrefix: _INBOX.>\n", []string{"a.yaml:2:", "nats.inboxPrefix", `inbox prefix "_INBOX.>": it has a wildcard`}},
		{"nats:\n  inboxPrefix: ''\n", []string{"a.yaml:2:", "nats.inboxPrefix", "it is empty"}},
		{"inbox-prefix: _INBOX_a\n", []string{"a.yaml:1:", "--inbox-prefix is written nats.inboxPrefix"}},
		{"buffer:\n  hits: 0\n", []string{"a.yaml:2:", "buffer.hits", "at least 1"}},
		{"buffer-hits: 5\n", []string{"--buffer-hits is written buffer.hits"}},
		// What yaml.v3 alone would take: 1.5 for 1, a merge, a dotted key.
		{"buffer:\n  hits: 1.5\n", []string{"a.yaml:2:", "buffer.hits", `"1.5" is not a whole number`}},
		{"<<: {host: a}\n", []string{"a.yaml:1:", "a merge of keys: write the keys out"}},
		{"nats.url: x\n", []string{"a.yaml:1:", `unknown key "nats.url": keys are nested, write nats: {url: ...}`}},
		{"zzz: 1\n", []string{`unknown key "zzz"`, "known keys are host, nats, attach, deny, redact, buffer, metrics, log"}},
	} {
		_, err := agent.ParseConfigFile([]byte(tc.in), "a.yaml")
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.in, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q, want it to contain %q", tc.in, err, w)
			}
		}
	}
}

// lineOf returns the number of the first line of file that starts with
// prefix.
func lineOf(t *testing.T, file, prefix string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("%s: no line starts with %q", file, prefix)
	return 0
}

// The README's example parses too.
func TestConfigReadmeExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "### The agent's configuration file")
	if ok {
		_, rest, ok = strings.Cut(rest, "```yaml\n")
	}
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml example under \"### The agent's configuration file\"")
	}
	c, err := agent.ParseConfigFile([]byte(example), "README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Attach.UIDs) == 0 || len(c.Attach.Processes) == 0 || c.NATS.URL == "" {
		t.Errorf("the README's example lost its allow-list or server: %+v", c)
	}
}

// A secret in a file others may read is allowed, with a warning.
func TestConfigSecretWarning(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o600, false}} {
		file := filepath.Join(dir, fmt.Sprintf("agent-%o.yaml", tc.mode))
		if err := os.WriteFile(file, []byte("nats:\n  url: nats://n:4222\n  token: s3cret\n"), tc.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(file, tc.mode) // past the umask
		c, err := agent.LoadConfigFile(file)
		if err != nil {
			t.Fatal(err)
		}
		w := c.Warnings()
		if got := len(w) > 0; got != tc.warn {
			t.Errorf("mode %o: warnings %q, want some: %v", tc.mode, w, tc.warn)
		}
		if tc.warn && !strings.Contains(w[0], file+":3") || tc.warn && !strings.Contains(w[0], "nats.token") {
			t.Errorf("warning %q does not name the file, line and key", w[0])
		}
	}
}
