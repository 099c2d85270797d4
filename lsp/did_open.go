package lsp

import (
	"context"

	"go.lsp.dev/protocol"
)

// DidOpen starts following a buffer: hits are placed on its lines as they
// were when it opened, moved by later edits.
func (s *server) DidOpen(ctx context.Context, params *protocol.DidOpenTextDocumentParams) error {
	s.mu.Lock()
	s.docs[localPath(params.TextDocument.URI)] = newDocument(params.TextDocument.Text)
	s.mu.Unlock()
	return nil
}
