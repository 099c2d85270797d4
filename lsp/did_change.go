package lsp

import (
	"context"

	"go.lsp.dev/protocol"
)

// DidChange applies edits to the buffer and moves its traced lines with
// them.
func (s *server) DidChange(ctx context.Context, params *protocol.DidChangeTextDocumentParams) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[localPath(params.TextDocument.URI)]
	if d == nil {
		return nil
	}
	for _, ch := range params.ContentChanges {
		d.apply(ch)
	}
	return nil
}
