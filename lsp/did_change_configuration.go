package lsp

import (
	"context"

	"go.lsp.dev/protocol"
)

// DidChangeConfiguration applies new settings; a change that matters
// restarts reading the hit stream with them.
func (s *server) DidChangeConfiguration(ctx context.Context, params *protocol.DidChangeConfigurationParams) error {
	s.log.Debug("didChangeConfiguration", "settings", loggable(params.Settings))
	s.mu.Lock()
	cfg, err := mergeConfig(s.cfg, params.Settings)
	same := err == nil && cfg.equal(&s.cfg)
	if err == nil {
		s.cfg = cfg
	}
	s.mu.Unlock()
	if err != nil {
		s.showError(err.Error())
		return err
	}
	if !same {
		s.log.Info("configuration changed", "nats", cfg.NATS, "hosts", cfg.Hosts, "processes", cfg.Processes, "history", cfg.History)
		s.restartIngest()
	}
	return nil
}
