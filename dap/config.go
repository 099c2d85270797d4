package dap

import (
	"bytes"
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
	MaxHitsPerSecond int
	SubstitutePath   []SubstituteRule
	Persist          bool
	Snapshots        bool   // open hits as snapshots (stopped events); the processes never pause
	Cwd              string // the local checkout; breakpoint files and hit files are mapped inside it

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

// parseAttach decodes and checks the attach arguments. Attributes it does not
// know (type, request, name and what editors add) are ignored; known ones of
// the wrong shape are refused with the fix.
func parseAttach(raw json.RawMessage) (*AttachConfig, error) {
	cfg := &AttachConfig{Capture: fleet.DefaultCapture, MaxHitsPerSecond: fleet.DefaultMaxHitsPerSecond}
	var attrs map[string]json.RawMessage
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		attrs = map[string]json.RawMessage{}
	} else if err := json.Unmarshal(raw, &attrs); err != nil {
		return nil, &configError{"arguments", fmt.Sprintf("must be a JSON object such as {\"nats\": %q}: %v", fleet.DefaultURL, err)}
	}
	str := func(name string, dst *string, example string) error {
		v, ok := attrs[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return &configError{name, fmt.Sprintf("must be a string, for example %q", example)}
		}
		return nil
	}
	globs := func(name string, dst *[]string, example string) error {
		v, ok := attrs[name]
		if !ok || string(v) == "null" {
			return nil
		}
		var one string
		if json.Unmarshal(v, &one) == nil {
			*dst = []string{one}
		} else if err := json.Unmarshal(v, dst); err != nil {
			return &configError{name, fmt.Sprintf("must be a list of globs, for example [%q]", example)}
		}
		for _, g := range *dst {
			if strings.TrimSpace(g) == "" {
				return &configError{name, "has an empty glob: drop it, or write \"*\" to match everything"}
			}
			if strings.HasPrefix(g, "${") {
				return &configError{name, fmt.Sprintf("holds the unexpanded variable %s: install the RipTrace extension that provides it, or list globs by hand", g)}
			}
		}
		// The rules every agent applies to a selector, said here for the
		// attribute rather than for each breakpoint later.
		probe := fleet.Spec{ID: "attach", Location: fleet.Location{Path: "x.go", Line: 1}}
		if name == "hosts" {
			probe.Selector.Hosts = *dst
		} else {
			probe.Selector.Processes = *dst
		}
		if err := probe.Validate(); err != nil {
			return &configError{name, strings.TrimPrefix(fleet.AsError(err).Message, "tracepoint attach: ")}
		}
		return nil
	}
	checks := []error{
		str("nats", &cfg.NATS, fleet.DefaultURL),
		str("prefix", &cfg.Prefix, fleet.DefaultPrefix),
		globs("hosts", &cfg.Hosts, "orders-*"),
		globs("processes", &cfg.Processes, "github.com/acme/orders/cmd/orders"),
		str("cwd", &cfg.Cwd, "/home/me/src/orders"),
		str("creds", &cfg.Creds, "/home/me/.nats/user.creds"),
		str("inboxPrefix", &cfg.InboxPrefix, "_INBOX_alice"),
		str("nkey", &cfg.NKey, "/home/me/.nats/user.nk"),
		str("user", &cfg.User, "alice"),
		str("password", &cfg.Password, "s3cret"),
		str("token", &cfg.Token, "s3cret"),
	}
	for _, err := range checks {
		if err != nil {
			return nil, err
		}
	}
	if v, ok := attrs["capture"]; ok && string(v) != "null" {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg.Capture); err != nil {
			return nil, &configError{"capture", fmt.Sprintf("must be an object with args, locals (booleans), exprs (strings), stackDepth, maxStringLen, maxArrayValues, maxStructDepth, maxVariables (numbers): %v", err)}
		}
		// The bounds every agent applies, said here for the attribute
		// rather than for each breakpoint later.
		if err := cfg.Capture.Validate(); err != nil {
			return nil, &configError{"capture", err.Error()}
		}
	}
	if v, ok := attrs["maxHitsPerSecond"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &cfg.MaxHitsPerSecond); err != nil || cfg.MaxHitsPerSecond <= 0 {
			return nil, &configError{"maxHitsPerSecond", fmt.Sprintf("must be a positive whole number, for example %d", fleet.DefaultMaxHitsPerSecond)}
		}
	}
	if v, ok := attrs["persist"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &cfg.Persist); err != nil {
			return nil, &configError{"persist", "must be true or false"}
		}
	}
	if v, ok := attrs["snapshots"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &cfg.Snapshots); err != nil {
			return nil, &configError{"snapshots", "must be true or false"}
		}
	}
	if v, ok := attrs["substitutePath"]; ok && string(v) != "null" {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg.SubstitutePath); err != nil {
			return nil, &configError{"substitutePath", `must be a list of {"from": LOCAL, "to": REMOTE} rules, for example [{"from": "${workspaceFolder}", "to": "/src"}]`}
		}
		for _, r := range cfg.SubstitutePath {
			if r.From == "" || r.To == "" {
				return nil, &configError{"substitutePath", `has a rule with an empty "from" or "to": give both prefixes`}
			}
		}
	}
	if v, ok := attrs["tls"]; ok && string(v) != "null" {
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg.TLS); err != nil {
			return nil, &configError{"tls", `must be {"cert": FILE, "key": FILE, "ca": FILE} (each optional, cert and key together)`}
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
	if n := len(cfg.Capture.Exprs); n > fleet.MaxExprs {
		return nil, &configError{"capture", fmt.Sprintf("exprs has %d expressions, more than the %d an agent allows: capture fewer", n, fleet.MaxExprs)}
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
	return cfg, nil
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
