package lsp

import (
	"context"
	"time"

	"go.lsp.dev/protocol"
)

// refresher asks the client to re-request lenses and hints after the
// aggregate changed, at most once per opts.RefreshEvery, and only for what
// the client declared it supports. It returns when the connection ends.
func (s *server) refresher() {
	var last time.Time
	for {
		select {
		case <-s.done:
			return
		case <-s.changed:
		}
		if wait := s.opts.RefreshEvery - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		s.mu.Lock()
		lens, hints := s.refreshLens, s.refreshHints
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// Refreshes are requests: a client that is slow to answer delays
		// the next one instead of piling them up.
		if lens {
			if err := s.client.CodeLensRefresh(ctx); err != nil {
				s.log.Debug("workspace/codeLens/refresh", "err", err)
			} else {
				s.log.Debug("workspace/codeLens/refresh answered")
			}
		}
		if hints {
			if err := s.client.InlayHintRefresh(ctx); err != nil {
				s.log.Debug("workspace/inlayHint/refresh", "err", err)
			}
		}
		cancel()
	}
}

// showError tells the user about a problem through window/showMessage.
func (s *server) showError(msg string) {
	if s.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.client.ShowMessage(ctx, &protocol.ShowMessageParams{Type: protocol.MessageTypeError, Message: "riptrace: " + msg})
}
