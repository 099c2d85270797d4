package lsp

import (
	"context"
)

// Exit ends the session: through opts.Exit when set (riptrace lsp ends the
// process at once, since its reader is blocked on stdin), otherwise by
// closing the connection.
func (s *server) Exit(ctx context.Context) error {
	s.mu.Lock()
	code := 1
	if s.shutdown {
		code = 0
	}
	s.mu.Unlock()
	if s.opts.Exit != nil {
		s.stop()
		s.opts.Exit(code)
		return nil
	}
	// Close waits for handlers to return, this one included.
	go s.conn.Close()
	return nil
}
