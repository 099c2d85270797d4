package lsp

import (
	"context"
)

// Shutdown stops reading hits and removes the tracepoints the editor
// declared; the connection stays up until exit.
func (s *server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	s.stop()
	return nil
}
