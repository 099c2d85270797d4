package lsp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// DefaultHistory is how far back the server replays the hit stream when it
// starts or its configuration changes.
const DefaultHistory = 10 * time.Minute

// Config is what the editor configures, through initializationOptions and
// workspace/didChangeConfiguration (either the object itself or the object
// under "riptrace"):
//
//	{"nats": "nats://127.0.0.1:4222", "credentials": "/path/user.creds",
//	 "hosts": ["orders-*"], "processes": ["github.com/acme/*"],
//	 "group": ["req.OrderID"], "history": "10m", "maxRecent": 20,
//	 "backend": "auto"}
//
// The NATS credentials are those of the debug adapter's attach
// configuration, except that the .creds file is "credentials".
type Config struct {
	NATS        string         `json:"nats,omitempty"`
	Credentials string         `json:"credentials,omitempty"` // a NATS .creds file
	InboxPrefix string         `json:"inboxPrefix,omitempty"` // where replies arrive: the prefix the server gives the user
	NKey        string         `json:"nkey,omitempty"`        // an nkey seed file
	User        string         `json:"user,omitempty"`
	Password    string         `json:"password,omitempty"`
	Token       string         `json:"token,omitempty"`
	TLS         fleet.TLSFiles `json:"tls,omitzero"`
	Prefix      string         `json:"prefix,omitempty"`
	Hosts       []string       `json:"hosts,omitempty"`
	Processes   []string       `json:"processes,omitempty"`
	// Group names captured values that name a request (fleet.GroupBy).
	Group []string `json:"group,omitempty"`
	// History is a Go duration: how much of the stream's history to replay.
	History   string `json:"history,omitempty"`
	MaxRecent int    `json:"maxRecent,omitempty"`
	// Backend is the agent backend of the tracepoints the server declares:
	// auto, ebpf or delve.
	Backend string `json:"backend,omitempty"`
	// Revision is the revision processes without vcs.revision run, for
	// those whose revision cannot be found (source.Resolve); empty finds it.
	Revision string `json:"revision,omitempty"`
	// Recording is a recording of riptrace run --record to show instead
	// of the fleet's hits (recording.go); relative to the workspace.
	Recording string `json:"recording,omitempty"`
}

// DefaultConfig is the configuration before the editor says anything: NATS
// from $RIPTRACE_NATS or the default URL, every host and process.
func DefaultConfig() Config {
	url := os.Getenv("RIPTRACE_NATS")
	if url == "" {
		url = fleet.DefaultURL
	}
	return Config{NATS: url, Prefix: fleet.DefaultPrefix, History: DefaultHistory.String(), MaxRecent: DefaultMaxRecent, Backend: "auto"}
}

// credentials are the NATS credentials of the settings.
func (c *Config) credentials() fleet.Credentials {
	return fleet.Credentials{Creds: c.Credentials, NKey: c.NKey, User: c.User, Password: c.Password, Token: c.Token, TLS: c.TLS, InboxPrefix: c.InboxPrefix}
}

// SetCredentials sets the NATS credentials of the settings, as the
// command line gives them.
func (c *Config) SetCredentials(cred fleet.Credentials) {
	c.Credentials, c.NKey, c.User, c.Password, c.Token, c.TLS, c.InboxPrefix = cred.Creds, cred.NKey, cred.User, cred.Password, cred.Token, cred.TLS, cred.InboxPrefix
}

// settingName spells a field of fleet.Credentials as the setting that
// holds it.
func settingName(field string) string {
	if field == "creds" {
		return "credentials"
	}
	return field
}

// credentialError says which setting holds a credential that cannot work;
// other errors are returned as they are.
func credentialError(err error) error {
	var ce *fleet.CredentialError
	if errors.As(err, &ce) {
		return fmt.Errorf("the riptrace setting %s %s", settingName(ce.Field), ce.Msg)
	}
	return err
}

// loggable is raw settings with the values of secrets hidden, for the log.
func loggable(raw []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return string(raw)
	}
	for k, v := range m {
		switch k {
		case "password", "token":
			m[k] = json.RawMessage(`"(hidden)"`)
		case "riptrace":
			m[k] = json.RawMessage(loggable(v))
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// history returns the replay window.
func (c *Config) history() time.Duration {
	d, err := time.ParseDuration(c.History)
	if err != nil || d < 0 {
		return DefaultHistory
	}
	return d
}

// mergeConfig overlays the settings in raw (JSON) onto base. Fields raw does
// not mention keep their value.
func mergeConfig(base Config, raw []byte) (Config, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return base, nil
	}
	var wrapped struct {
		RipTrace json.RawMessage `json:"riptrace"`
	}
	if json.Unmarshal(raw, &wrapped) == nil && len(wrapped.RipTrace) > 0 {
		raw = wrapped.RipTrace
	}
	var settings map[string]json.RawMessage
	if err := json.Unmarshal(raw, &settings); err != nil {
		return base, fmt.Errorf("reading the riptrace settings: %w (expected {\"nats\": URL, \"hosts\": [GLOB], \"processes\": [GLOB], \"history\": DURATION})", err)
	}
	cfg := base
	// Decoding reuses a slice's array: base's must stay as they are.
	cfg.Hosts, cfg.Processes, cfg.Group = slices.Clone(base.Hosts), slices.Clone(base.Processes), slices.Clone(base.Group)
	// Where each of Settings is decoded to; other keys (the editor's own,
	// such as riptrace.path) are not the server's.
	dst := map[string]any{
		"nats": &cfg.NATS, "credentials": &cfg.Credentials, "inboxPrefix": &cfg.InboxPrefix, "nkey": &cfg.NKey, "user": &cfg.User,
		"password": &cfg.Password, "token": &cfg.Token, "tls": &cfg.TLS, "prefix": &cfg.Prefix, "hosts": &cfg.Hosts,
		"processes": &cfg.Processes, "group": &cfg.Group, "history": &cfg.History, "maxRecent": &cfg.MaxRecent, "backend": &cfg.Backend,
		"revision": &cfg.Revision, "recording": &cfg.Recording,
	}
	for _, s := range Settings {
		if v, ok := settings[s.Name]; ok { // null: as json.Unmarshal, a list is emptied
			if err := s.Decode(v, dst[s.Name]); err != nil {
				return base, fmt.Errorf("reading the riptrace settings: %s %w", s.Name, err)
			}
		}
	}
	cred := cfg.credentials()
	if err := cred.Check(settingName); err != nil {
		return base, fmt.Errorf("reading the riptrace settings: %w", err)
	}
	if _, err := fleet.DefaultCapture.CaptureGroup(cfg.Group...); err != nil {
		return base, fmt.Errorf("reading the riptrace settings: group %w", err)
	}
	if _, err := time.ParseDuration(cfg.History); err != nil {
		return base, fmt.Errorf("reading the riptrace settings: history %q is not a duration such as \"10m\"", cfg.History)
	}
	for _, g := range append(append([]string{}, cfg.Hosts...), cfg.Processes...) {
		if g == "" {
			return base, fmt.Errorf("reading the riptrace settings: empty glob in hosts or processes: drop it, or write * to match everything")
		}
	}
	return cfg, nil
}

// capture is what the tracepoints the server declares capture: the
// defaults and the group's expressions, checked by mergeConfig.
func (c *Config) capture() fleet.Capture {
	capture, err := fleet.DefaultCapture.CaptureGroup(c.Group...)
	if err != nil {
		return fleet.DefaultCapture
	}
	return capture
}

// timeline is how the server's timeline names requests: by the group.
func (c *Config) timeline() fleet.TimelineOptions {
	if len(c.Group) == 0 {
		return fleet.TimelineOptions{}
	}
	return fleet.TimelineOptions{Group: fleet.GroupBy(c.Group...)}
}

// admits reports whether a hit passes the configured host and process
// globs.
func (c *Config) admits(h *fleet.Hit) bool {
	sel := fleet.Selector{Hosts: c.Hosts}
	if !sel.MatchHost(h.Host) {
		return false
	}
	return fleet.MatchProcess(c.Processes, &fleet.Process{Exe: h.Process.Exe, Module: h.Process.Module, MainPackage: h.Process.MainPackage})
}

func (c *Config) equal(o *Config) bool {
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}
