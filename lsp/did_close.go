package lsp

import (
	"context"

	"go.lsp.dev/protocol"
)

// DidClose stops following a buffer; the file on disk is used again.
func (s *server) DidClose(ctx context.Context, params *protocol.DidCloseTextDocumentParams) error {
	s.mu.Lock()
	delete(s.docs, localPath(params.TextDocument.URI))
	s.mu.Unlock()
	return nil
}
