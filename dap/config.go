package dap

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// AttachConfig is the attach request's arguments: the launch configuration
// of docs/DESIGN.md ("Launch configuration and other settings"), NATS
// credentials included.
type AttachConfig struct {
	NATS             string
	Prefix           string
	Hosts            []string
	Processes        []string
	Capture          fleet.Capture
	Group            []string // names of captured values that name a request (fleet.GroupBy)
	MaxHitsPerSecond int
	SubstitutePath   []SubstituteRule
	Persist          bool
	Snapshots        bool   // open hits as snapshots (stopped events); the processes never pause
	Backend          string // the agent backend of the breakpoints: auto, ebpf or delve
	ConsoleHits      string // summary or all: how many hits the debug console shows
	Cwd              string // the local checkout; breakpoint files and hit files are mapped inside it
	Revision         string // the revision processes without vcs.revision run; empty finds it (source.Resolve)
	Recording        string // a recording of riptrace run --record to replay instead of attaching (recording.go)

	fleet.Credentials // creds, nkey, user, password, token, tls, inboxPrefix
}

// SubstituteRule is one of vscode-go's substitutePath rules: a local path
// prefix From stands for the remote prefix To.
type SubstituteRule struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// configError is an invalid attach configuration: it names the attribute
// and says what to write instead.
type configError struct {
	Attr string
	Fix  string
}

func (e *configError) Error() string {
	return fmt.Sprintf("invalid attach configuration: %q %s", e.Attr, e.Fix)
}

// parseAttach decodes and checks the attach arguments. It reads the
// attributes of AttachAttributes, each strictly, and refuses one of the
// wrong shape with its example and description; attributes it does not know
// (type, request, name and what editors add) are ignored.
func parseAttach(raw json.RawMessage) (*AttachConfig, error) {
	cfg := &AttachConfig{Capture: fleet.DefaultCapture, MaxHitsPerSecond: fleet.DefaultMaxHitsPerSecond, Backend: "auto", ConsoleHits: consoleSummary}
	var attrs map[string]json.RawMessage
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		attrs = map[string]json.RawMessage{}
	} else if err := json.Unmarshal(raw, &attrs); err != nil {
		return nil, &configError{"arguments", fmt.Sprintf("must be a JSON object such as {\"nats\": %q}: %v", fleet.DefaultURL, err)}
	}
	// Where each of AttachAttributes is decoded to.
	dst := map[string]any{
		"nats": &cfg.NATS, "hosts": &cfg.Hosts, "processes": &cfg.Processes, "capture": &cfg.Capture, "group": &cfg.Group,
		"maxHitsPerSecond": &cfg.MaxHitsPerSecond, "substitutePath": &cfg.SubstitutePath, "persist": &cfg.Persist,
		"snapshots": &cfg.Snapshots, "backend": &cfg.Backend, "consoleHits": &cfg.ConsoleHits, "cwd": &cfg.Cwd, "prefix": &cfg.Prefix, "revision": &cfg.Revision, "recording": &cfg.Recording, "creds": &cfg.Creds, "inboxPrefix": &cfg.InboxPrefix,
		"nkey": &cfg.NKey, "user": &cfg.User, "password": &cfg.Password, "token": &cfg.Token, "tls": &cfg.TLS,
	}
	for _, a := range AttachAttributes {
		if v, ok := attrs[a.Name]; ok && string(v) != "null" {
			if err := a.Decode(v, dst[a.Name]); err != nil {
				return nil, &configError{a.Name, err.Error()}
			}
		}
	}
	if err := cmp.Or(checkGlobs("hosts", cfg.Hosts), checkGlobs("processes", cfg.Processes)); err != nil {
		return nil, err
	}
	// The bounds every agent applies, said here for the attribute rather
	// than for each breakpoint later.
	if err := cfg.Capture.Validate(); err != nil {
		return nil, &configError{"capture", err.Error()}
	}
	if cfg.MaxHitsPerSecond <= 0 {
		return nil, &configError{"maxHitsPerSecond", fmt.Sprintf("must be a positive whole number, for example %d", fleet.DefaultMaxHitsPerSecond)}
	}
	for _, r := range cfg.SubstitutePath {
		if r.From == "" || r.To == "" {
			return nil, &configError{"substitutePath", `has a rule with an empty "from" or "to": give both prefixes`}
		}
	}
	if cfg.NATS == "" {
		cfg.NATS = os.Getenv("RIPTRACE_NATS")
	}
	if cfg.NATS == "" {
		cfg.NATS = fleet.DefaultURL
	}
	for _, u := range strings.Split(cfg.NATS, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Host == "" || !map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}[pu.Scheme] {
			return nil, &configError{"nats", fmt.Sprintf("must be a NATS URL such as %q (scheme nats, tls, ws or wss), got %q", fleet.DefaultURL, cfg.NATS)}
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fleet.DefaultPrefix
	} else if fleet.Token(cfg.Prefix) != cfg.Prefix {
		return nil, &configError{"prefix", fmt.Sprintf("must be one subject token (letters, digits, '-', '_'), such as %q", fleet.DefaultPrefix)}
	}
	if err := cfg.Credentials.Check(strconv.Quote); err != nil {
		return nil, attributeError(err)
	}
	// The group's expressions are captured with the others, and count
	// against the same bound.
	var err error
	if cfg.Capture, err = cfg.Capture.CaptureGroup(cfg.Group...); err != nil {
		return nil, &configError{"group", err.Error()}
	}
	if n := len(cfg.Capture.Exprs); n > fleet.MaxExprs {
		with := ""
		if len(cfg.Group) > 0 {
			with = ", with group's,"
		}
		return nil, &configError{"capture", fmt.Sprintf("exprs has %d expressions%s more than the %d an agent allows: capture fewer", n, with, fleet.MaxExprs)}
	}
	for _, e := range cfg.Capture.Exprs {
		s := fleet.Spec{ID: "x", Location: fleet.Location{Path: "x.go", Line: 1}, Capture: fleet.Capture{Exprs: []string{e}}}
		if err := s.Validate(); err != nil {
			return nil, &configError{"capture", fmt.Sprintf("exprs: %v", err)}
		}
	}
	if cfg.Cwd == "" {
		cfg.Cwd, _ = os.Getwd()
	}
	if abs, err := filepath.Abs(cfg.Cwd); err == nil {
		cfg.Cwd = abs
	}
	if fi, err := os.Stat(cfg.Cwd); err != nil || !fi.IsDir() {
		return nil, &configError{"cwd", fmt.Sprintf("names %s, which is not a directory: give the root of the local checkout (\"${workspaceFolder}\" in VS Code)", cfg.Cwd)}
	}
	if cfg.Recording != "" && !filepath.IsAbs(cfg.Recording) {
		cfg.Recording = filepath.Join(cfg.Cwd, cfg.Recording)
	}
	return cfg, nil
}

// timeline is how the session's timeline, live or replayed, names
// requests: by the group, if any.
func (c *AttachConfig) timeline() fleet.TimelineOptions {
	if len(c.Group) == 0 {
		return fleet.TimelineOptions{}
	}
	return fleet.TimelineOptions{Group: fleet.GroupBy(c.Group...)}
}

// checkGlobs applies to the globs of the attribute name the rules every
// agent applies to a selector, said here for the attribute rather than for
// each breakpoint later.
func checkGlobs(name string, globs []string) error {
	for _, g := range globs {
		if strings.TrimSpace(g) == "" {
			return &configError{name, "has an empty glob: drop it, or write \"*\" to match everything"}
		}
		if strings.HasPrefix(g, "${") {
			return &configError{name, fmt.Sprintf("holds the unexpanded variable %s: install the RipTrace extension that provides it, or list globs by hand", g)}
		}
	}
	probe := fleet.Spec{ID: "attach", Location: fleet.Location{Path: "x.go", Line: 1}, Selector: fleet.Selector{Hosts: globs}}
	if name == "processes" {
		probe.Selector = fleet.Selector{Processes: globs}
	}
	if err := probe.Validate(); err != nil {
		return &configError{name, strings.TrimPrefix(fleet.AsError(err).Message, "tracepoint attach: ")}
	}
	return nil
}

// attributeError turns a *fleet.CredentialError into a configError that
// names the attribute; other errors are returned as they are.
func attributeError(err error) error {
	var ce *fleet.CredentialError
	if errors.As(err, &ce) {
		return &configError{ce.Field, ce.Msg}
	}
	return err
}

// toRemote applies substitutePath to a local file: the path the processes
// know it by, and whether a rule applied.
func (c *AttachConfig) toRemote(local string) (string, bool) {
	for _, r := range c.SubstitutePath {
		if rest, ok := cutPathPrefix(local, r.From); ok {
			return r.To + rest, true
		}
	}
	return "", false
}

// toLocal applies substitutePath backwards to a file a process names.
func (c *AttachConfig) toLocal(remote string) (string, bool) {
	for _, r := range c.SubstitutePath {
		if rest, ok := cutPathPrefix(remote, r.To); ok {
			return r.From + rest, true
		}
	}
	return "", false
}

// cutPathPrefix cuts prefix from p on a whole path element.
func cutPathPrefix(p, prefix string) (string, bool) {
	prefix = strings.TrimSuffix(prefix, "/")
	if p == prefix {
		return "", true
	}
	if rest, ok := strings.CutPrefix(p, prefix+"/"); ok {
		return "/" + rest, true
	}
	return "", false
}
