package lsp

import (
	"encoding/json"
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
//	 "history": "10m", "maxRecent": 20}
type Config struct {
	NATS        string   `json:"nats,omitempty"`
	Credentials string   `json:"credentials,omitempty"` // a NATS .creds file
	InboxPrefix string   `json:"inboxPrefix,omitempty"` // where replies arrive: the prefix the server gives the user
	Prefix      string   `json:"prefix,omitempty"`
	Hosts       []string `json:"hosts,omitempty"`
	Processes   []string `json:"processes,omitempty"`
	// History is a Go duration: how much of the stream's history to replay.
	History   string `json:"history,omitempty"`
	MaxRecent int    `json:"maxRecent,omitempty"`
}

// DefaultConfig is the configuration before the editor says anything: NATS
// from $RIPTRACE_NATS or the default URL, every host and process.
func DefaultConfig() Config {
	url := os.Getenv("RIPTRACE_NATS")
	if url == "" {
		url = fleet.DefaultURL
	}
	return Config{NATS: url, Prefix: fleet.DefaultPrefix, History: DefaultHistory.String(), MaxRecent: DefaultMaxRecent}
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
	cfg := base
	// Unmarshal reuses a slice's array: base's must stay as they are.
	cfg.Hosts, cfg.Processes = slices.Clone(base.Hosts), slices.Clone(base.Processes)
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return base, fmt.Errorf("reading the riptrace settings: %w (expected {\"nats\": URL, \"hosts\": [GLOB], \"processes\": [GLOB], \"history\": DURATION})", err)
	}
	if cfg.InboxPrefix != "" {
		if err := fleet.CheckInboxPrefix(cfg.InboxPrefix); err != nil {
			return base, fmt.Errorf("reading the riptrace settings: inboxPrefix: %w", err)
		}
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
