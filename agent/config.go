package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/strictyaml"
)

// FileConfig is the agent's configuration file (`riptrace agent --config
// FILE`), in YAML, as operators keep it in a Kubernetes ConfigMap or under
// /etc/riptrace. It covers what the agent's flags cover; a flag given on the
// command line wins over the file. docs/agent.example.yaml shows every key.
//
// Parsing is strict: an unknown key, a value of the wrong kind or a pattern
// that does not compile is a *ConfigError naming the file, the line and the
// key, and saying what to write instead.
type FileConfig struct {
	// Path is the file the configuration was read from, for messages.
	Path string `yaml:"-"`

	Host    string       `yaml:"host"`
	NATS    NATSConfig   `yaml:"nats"`
	Attach  AttachConfig `yaml:"attach"`
	Deny    []string     `yaml:"deny"`
	Redact  RedactConfig `yaml:"redact"`
	Buffer  BufferConfig `yaml:"buffer"`
	Metrics string       `yaml:"metrics"`
	Log     LogConfig    `yaml:"log"`
	// Backend serves tracepoints that name none: auto, ebpf or delve.
	Backend string `yaml:"backend"`
	// StopBudget is the fraction of each second a traced process may spend
	// stopped by tracepoints (0: no budget).
	StopBudget float64 `yaml:"stopBudget"`

	lines    map[string]int // key path ("attach.uids") → line, for messages
	warnings []string
}

// NATSConfig says where the fleet's NATS server is and how to log in.
type NATSConfig struct {
	URL         string    `yaml:"url"`
	Prefix      string    `yaml:"prefix"`
	Creds       string    `yaml:"creds"`
	InboxPrefix string    `yaml:"inboxPrefix"` // where replies arrive: the prefix the server gives the user
	NKey        string    `yaml:"nkey"`
	User        string    `yaml:"user"`
	Password    string    `yaml:"password"`
	Token       string    `yaml:"token"`
	TLS         TLSConfig `yaml:"tls"`
}

// TLSConfig names the files of a TLS connection to NATS.
type TLSConfig = fleet.TLSFiles

// credentials are the NATS credentials of the configuration.
func (n *NATSConfig) credentials() *fleet.Credentials {
	return &fleet.Credentials{Creds: n.Creds, NKey: n.NKey, User: n.User, Password: n.Password, Token: n.Token, TLS: n.TLS, InboxPrefix: n.InboxPrefix}
}

// AttachConfig is the attach allow-list: the agent manages, offers and
// attaches to only the processes it admits.
type AttachConfig struct {
	// Processes are globs on the module path, main package or executable
	// name (as --processes); empty admits every Go process.
	Processes []string `yaml:"processes"`
	// UIDs admits only processes whose real, effective and saved uids are
	// all listed; empty admits every user.
	UIDs []int `yaml:"uids"`
}

// RedactConfig says what never leaves the host.
type RedactConfig struct {
	Names  *string `yaml:"names"`  // nil: DefaultRedactNames
	Values *string `yaml:"values"` // nil: DefaultRedactValues
	Off    bool    `yaml:"off"`
}

// BufferConfig bounds the hits kept while NATS cannot take them
// (--buffer-hits, --buffer-bytes).
type BufferConfig struct {
	Hits  int `yaml:"hits"`
	Bytes int `yaml:"bytes"`
}

// LogConfig shapes the agent's log.
type LogConfig struct {
	JSON bool `yaml:"json"`
}

// ConfigError is a mistake in a configuration file, at a line (0 when it
// concerns the whole file).
type ConfigError struct {
	File string
	Line int
	Key  string // the key's path, "attach.uids"; "" for the file as a whole
	Msg  string
}

func (e *ConfigError) Error() string {
	return strictyaml.Format(e.File, e.Line, 0, e.Key, e.Msg)
}

// maxConfigSize bounds what is read: an agent config is a few hundred bytes.
const maxConfigSize = 1 << 20

// LoadConfigFile reads and checks the agent configuration file at path.
func LoadConfigFile(path string) (*FileConfig, error) {
	data, err := strictyaml.ReadFile(path, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("reading the agent configuration: %w", err)
	}
	c, err := ParseConfigFile(data, path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o044 != 0 {
		for _, key := range []string{"nats.password", "nats.token"} {
			if c.Set(key) {
				c.warnings = append(c.warnings, fmt.Sprintf("%s holds a secret (%s) and other users may read it (mode %v): chmod go-r it, or keep the secret in a Kubernetes Secret or a --creds file", c.Where(key), key, fi.Mode().Perm()))
			}
		}
	}
	return c, nil
}

// Warnings are what is allowed but unwise in the file (a secret others may
// read); the agent logs them.
func (c *FileConfig) Warnings() []string { return c.warnings }

// ParseConfigFile parses and checks an agent configuration; name is the
// file's name in messages.
//
// The file's keys are indexed with their lines first, so that a mistake is
// told at its key with what to write instead; yaml.v3's strict decoding
// (KnownFields) then sets the values.
func ParseConfigFile(data []byte, name string) (*FileConfig, error) {
	fail := func(line int, key, format string, args ...any) error {
		return &ConfigError{File: name, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > maxConfigSize {
		return nil, fail(0, "", "larger than %d bytes: this is not an agent configuration", maxConfigSize)
	}
	cfg := &FileConfig{Path: name, lines: make(map[string]int)}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, nil // an empty file: every default
		}
		return nil, fail(strictyaml.Line(err), "", "not valid YAML: %s", strictyaml.Message(err))
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fail(more.Line, "", "a second YAML document (after ---): keep the agent's configuration in one document")
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		return cfg, nil // comments only
	}
	if root := doc.Content[0]; root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "", "%s: the agent configuration is a mapping of keys, such as host: orders-a (see docs/agent.example.yaml)", strictyaml.Describe(root))
	}
	// The index finds each mistake at its key, in the order of the file,
	// and says what to write instead; the strict decoder then sets the
	// values, and refuses what the index has let through.
	for _, k := range indexKeys(doc.Content[0], "", nil) {
		parent, last := cutLastKey(k.path)
		t := keyType(k.path)
		switch {
		case k.key != nil && k.key.Kind != yaml.ScalarNode:
			return nil, fail(k.key.Line, parent, "a key must be a plain word, not %s", strictyaml.Describe(k.key))
		case k.key != nil && k.key.ShortTag() == "!!merge":
			return nil, fail(k.line, k.path, "a merge of keys: write the keys out")
		case k.key != nil && strings.Contains(k.key.Value, "."):
			return nil, fail(k.line, "", "unknown key %q: keys are nested, write %s", k.path, nest(k.path))
		case t == nil:
			return nil, fail(k.line, "", "unknown key %q%s", k.path, suggest(parent, last))
		case cfg.lines[k.path] != 0:
			return nil, fail(k.line, k.path, "set twice (first on line %d): keep one", cfg.lines[k.path])
		case !fits(k.val, t):
			return nil, fail(k.val.Line, k.path, "%s", wrongKind(k.val, k.path, t))
		}
		cfg.lines[k.path] = k.line
	}
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return nil, fail(strictyaml.Line(err), "", "%s", strictyaml.Message(err))
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Line returns the line of key (a path such as "attach.uids"), 0 if the file
// does not set it.
func (c *FileConfig) Line(key string) int { return c.lines[key] }

// Set reports whether the file sets key.
func (c *FileConfig) Set(key string) bool { _, ok := c.lines[key]; return ok }

// Where says where key was set, for messages: "/etc/riptrace/agent.yaml:12".
func (c *FileConfig) Where(key string) string {
	if l := c.lines[key]; l > 0 {
		return fmt.Sprintf("%s:%d", c.Path, l)
	}
	return c.Path
}

// Redactor returns the redactor the file asks for.
func (c *FileConfig) Redactor() *Redactor {
	if c.Redact.Off {
		return &Redactor{}
	}
	names, values := DefaultRedactNames, DefaultRedactValues
	if c.Redact.Names != nil {
		names = *c.Redact.Names
	}
	if c.Redact.Values != nil {
		values = *c.Redact.Values
	}
	r, err := NewRedactor(names, values)
	if err != nil {
		panic(err) // check compiled them
	}
	return r
}

// check validates the values, once their kinds are right.
func (c *FileConfig) check() error {
	fail := func(key, format string, args ...any) error {
		return &ConfigError{File: c.Path, Line: c.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if c.Set("host") && strings.TrimSpace(c.Host) == "" {
		return fail("host", "empty: leave the key out to use the hostname, or write host: orders-a")
	}
	if c.Set("nats.url") && strings.TrimSpace(c.NATS.URL) == "" {
		return fail("nats.url", "empty: write url: nats://nats.example:4222, or leave the key out for %s", "nats://127.0.0.1:4222")
	}
	if c.Set("nats.inboxPrefix") && c.NATS.InboxPrefix == "" {
		// Connect takes an empty prefix for _INBOX: written out, it is a mistake.
		return fail("nats.inboxPrefix", "%v", fleet.CheckInboxPrefix(""))
	}
	if err := c.NATS.credentials().Check(func(f string) string { return "nats." + f }); err != nil {
		var ce *fleet.CredentialError
		if !errors.As(err, &ce) {
			return err
		}
		return fail("nats."+ce.Field, "%s", ce.Msg)
	}
	// An empty list reads as "admit none" to a person and as "no rule" to
	// the agent: ask which is meant.
	if c.Set("attach.processes") && len(c.Attach.Processes) == 0 {
		return fail("attach.processes", `an empty list: leave the key out to admit every Go process, or list the globs to admit, such as ["orders", "*/cmd/payments"]`)
	}
	if c.Set("attach.uids") && len(c.Attach.UIDs) == 0 {
		return fail("attach.uids", "an empty list: leave the key out to admit processes of every uid, or list the uids to admit, such as [1000]")
	}
	for i, g := range c.Attach.Processes {
		if strings.TrimSpace(g) == "" {
			return fail(fmt.Sprintf("attach.processes[%d]", i), `empty glob: drop it, or write "*" to admit every Go process`)
		}
	}
	for i, u := range c.Attach.UIDs {
		if u < 0 || u > 1<<32-2 {
			return fail(fmt.Sprintf("attach.uids[%d]", i), "%d is not a uid: write user ids such as 1000 (see `id -u USER`)", u)
		}
	}
	for i, g := range c.Deny {
		if strings.TrimSpace(g) == "" {
			return fail(fmt.Sprintf("deny[%d]", i), "empty glob: drop it; globs look like '*/internal/crypto/*' or 'main.(*Vault).*'")
		}
	}
	for key, p := range map[string]*string{"redact.names": c.Redact.Names, "redact.values": c.Redact.Values} {
		if p == nil {
			continue
		}
		if c.Redact.Off {
			return fail(key, "set together with redact.off: true, which sends every value as is: drop one of the two")
		}
		if _, err := regexp.Compile(*p); err != nil {
			return fail(key, "%q is not a Go regular expression (%v); for example '(?i)password|secret'", *p, err)
		}
	}
	for key, n := range map[string]int{"buffer.hits": c.Buffer.Hits, "buffer.bytes": c.Buffer.Bytes} {
		if c.Set(key) && n < 1 {
			return fail(key, "%d: the buffer holds at least 1; leave the key out for the default", n)
		}
	}
	if c.Set("backend") && c.Backend != BackendAuto && c.Backend != BackendEBPF && c.Backend != BackendDelve {
		return fail("backend", "%q is not a backend: write auto, ebpf or delve", c.Backend)
	}
	if c.StopBudget < 0 || c.StopBudget >= 1 || math.IsNaN(c.StopBudget) {
		return fail("stopBudget", "%v: write the fraction of each second a process may spend stopped, such as 0.1 (0: no budget)", c.StopBudget)
	}
	if c.Metrics != "" {
		if _, port, err := net.SplitHostPort(c.Metrics); err != nil || port == "" {
			return fail("metrics", "%q is not an address: write HOST:PORT, such as 127.0.0.1:9464 (or :9464 for every interface)", c.Metrics)
		}
	}
	return nil
}

// keyLine is where a key of the file, or an item of a list, is written.
type keyLine struct {
	path string     // "attach.uids", "attach.uids[1]"
	line int        // the key's line; the item's in a list
	key  *yaml.Node // nil for an item
	val  *yaml.Node // its value, aliases followed
}

// maxKeyLines bounds the index, which follows aliases: an anchor used many
// times over must not make it grow without end.
const maxKeyLines = 1 << 12

// indexKeys appends the keys and items under n to out, in the order of the
// file. It does not look under a key the file does not have: that key is
// the mistake to tell.
func indexKeys(n *yaml.Node, path string, out []keyLine) []keyLine {
	add := func(p string, key, v *yaml.Node) {
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias // an anchor is never an alias itself
		}
		line := v.Line
		if key != nil {
			line = key.Line
		}
		if len(out) < maxKeyLines {
			out = append(out, keyLine{p, line, key, v})
			if keyType(p) != nil {
				out = indexKeys(v, p, out)
			}
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			add(strictyaml.Join(path, n.Content[i].Value), n.Content[i], n.Content[i+1])
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			add(fmt.Sprintf("%s[%d]", path, i), nil, item)
		}
	}
	return out
}

// fits reports whether n is a value of type t as the file must write it:
// the decoder would also read yes as true, and 1.5 or "1" as the whole
// number 1.
func fits(n *yaml.Node, t reflect.Type) bool {
	switch {
	case n.ShortTag() == "!!null":
		return true // "key:" with nothing: the default
	case t.Kind() == reflect.Struct:
		return n.Kind == yaml.MappingNode
	case t.Kind() == reflect.Slice:
		return n.Kind == yaml.SequenceNode
	case n.Kind != yaml.ScalarNode:
		return false
	}
	tags := map[reflect.Kind][]string{reflect.String: {n.ShortTag()}, reflect.Bool: {"!!bool"}, reflect.Int: {"!!int"}, reflect.Float64: {"!!float", "!!int"}}
	return slices.Contains(tags[t.Kind()], n.ShortTag()) && n.Decode(reflect.New(t).Interface()) == nil
}

// wrongKind says what the value n at path, which cannot be a t, should
// look like.
func wrongKind(n *yaml.Node, path string, t reflect.Type) string {
	_, last := cutLastKey(path)
	switch {
	case t.Kind() == reflect.Struct:
		names := keysUnder(path)
		example := ""
		if n.Kind == yaml.ScalarNode && keyType(strictyaml.Join(path, names[0])).Kind() == reflect.String {
			example = fmt.Sprintf(": write %s: {%s: %s}", last, names[0], strconv.Quote(n.Value))
		}
		return fmt.Sprintf("%s, want keys under it (%s)%s", strictyaml.Describe(n), strings.Join(names, ", "), example)
	case t.Kind() == reflect.Slice:
		return fmt.Sprintf("%s, want a list: write %s: [%s] or one item per line under it with '- '", strictyaml.Describe(n), last, exampleItem(n, t.Elem().Kind()))
	case n.Kind != yaml.ScalarNode:
		return fmt.Sprintf("%s, want %s", strictyaml.Describe(n), kindName(t.Kind()))
	}
	return fmt.Sprintf("%q is not %s%s", n.Value, kindName(t.Kind()), quotedNote(n))
}

// configKey is a key of the file and the type of its value, pointers
// followed.
type configKey struct {
	path string // "attach.uids"
	t    reflect.Type
}

// configKeys are the keys the strict decoder knows, read from the yaml tags
// of FileConfig in the order of its fields, for the index and messages.
var configKeys = keysOf(reflect.TypeFor[FileConfig](), "")

func keysOf(t reflect.Type, path string) (keys []configKey) {
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		ft, key := f.Type, strictyaml.Join(path, tag)
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		keys = append(keys, configKey{key, ft})
		if ft.Kind() == reflect.Struct {
			keys = append(keys, keysOf(ft, key)...)
		}
	}
	return keys
}

// keyType returns the type of the value at path, of an item for
// "attach.uids[1]", and nil if the file has no such key.
func keyType(path string) reflect.Type {
	key, item, isItem := strings.Cut(path, "[")
	for _, k := range configKeys {
		switch {
		case k.path != key:
		case !isItem:
			return k.t
		case k.t.Kind() == reflect.Slice && !strings.ContainsAny(item, "[."):
			return k.t.Elem()
		}
	}
	return nil
}

// keysUnder lists the keys directly under path ("" for the top level).
func keysUnder(path string) []string {
	var names []string
	for _, k := range configKeys {
		if parent, name := cutLastKey(k.path); parent == path {
			names = append(names, name)
		}
	}
	return names
}

func cutLastKey(path string) (parent, key string) {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i], path[i+1:]
	}
	return "", path
}

// flagKeys maps the agent's flag names, which operators may write in the file
// by habit, to the file's keys.
var flagKeys = map[string]string{
	"nats": "nats.url", "prefix": "nats.prefix", "creds": "nats.creds", "nkey": "nats.nkey", "inbox-prefix": "nats.inboxPrefix",
	"user": "nats.user", "password": "nats.password", "token": "nats.token",
	"tls-ca": "nats.tls.ca", "tls-cert": "nats.tls.cert", "tls-key": "nats.tls.key",
	"processes": "attach.processes", "uid": "attach.uids",
	"redact-names": "redact.names", "redact-values": "redact.values", "no-redact": "redact.off",
	"log-json": "log.json", "buffer-hits": "buffer.hits", "buffer-bytes": "buffer.bytes", "config": "",
	"stop-budget": "stopBudget",
}

// suggest says what the writer of an unknown key probably meant.
func suggest(path, key string) string {
	known := keysUnder(path)
	where := "at the top level"
	if path != "" {
		where = "under " + path
	}
	// The key exists elsewhere in the file's layout.
	var elsewhere []string
	for _, k := range configKeys {
		if _, last := cutLastKey(k.path); last == key && k.path != strictyaml.Join(path, key) {
			elsewhere = append(elsewhere, k.path)
		}
	}
	if len(elsewhere) > 0 {
		return fmt.Sprintf(" %s: it belongs at %s (%s)", where, elsewhere[0], nest(elsewhere[0]))
	}
	if full, ok := flagKeys[strings.TrimPrefix(key, "--")]; ok {
		if full == "" {
			return ": the configuration file cannot name another one; pass --config on the command line"
		}
		if full != strictyaml.Join(path, key) {
			return fmt.Sprintf(": the flag --%s is written %s in the file (%s)", strings.TrimPrefix(key, "--"), full, nest(full))
		}
	}
	if best, ok := strictyaml.Closest(key, known); ok {
		return fmt.Sprintf(" %s: did you mean %s? (known keys: %s)", where, best, strings.Join(known, ", "))
	}
	return fmt.Sprintf(" %s: the known keys are %s (see docs/agent.example.yaml)", where, strings.Join(known, ", "))
}

// nest shows how a key path is written: "attach.uids" → "attach: {uids: ...}".
func nest(full string) string {
	parts := strings.Split(full, ".")
	s := parts[len(parts)-1] + ": ..."
	for i := len(parts) - 2; i >= 0; i-- {
		s = parts[i] + ": {" + s + "}"
	}
	return s
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	}
	return "a single value"
}

func quotedNote(n *yaml.Node) string {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return ": write it without quotes"
	}
	return ""
}

func exampleItem(n *yaml.Node, k reflect.Kind) string {
	if n.Kind == yaml.ScalarNode && n.Value != "" {
		if k == reflect.String {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	if k == reflect.Int {
		return "1000"
	}
	return `"github.com/acme/*"`
}
