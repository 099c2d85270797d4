package lsp

import (
	"context"
	"fmt"

	"go.lsp.dev/protocol"
)

// DidChange applies edits to the buffer and moves its traced lines with
// them. An edit that takes the buffer past the bounds stops following it.
func (s *server) DidChange(ctx context.Context, params *protocol.DidChangeTextDocumentParams) error {
	path := localPath(params.TextDocument.URI)
	why := ""
	s.mu.Lock()
	d := s.docs[path]
	if d == nil {
		s.mu.Unlock()
		return nil
	}
	for _, ch := range params.ContentChanges {
		if why = changeTooLarge(ch); why != "" {
			break
		}
		d.apply(ch)
		if len(d.lines) > MaxDocumentLines {
			why = fmt.Sprintf("it has %d lines, more than the %d riptrace lsp follows", len(d.lines), MaxDocumentLines)
			break
		}
	}
	s.mu.Unlock()
	if why != "" {
		s.unfollow(ctx, path, why)
	}
	return nil
}

// changeTooLarge says why a change's text is past the bounds, or "".
func changeTooLarge(ch protocol.TextDocumentContentChangeEvent) string {
	switch ch := ch.(type) {
	case *protocol.TextDocumentContentChangePartial:
		return tooLarge(ch.Text)
	case *protocol.TextDocumentContentChangeWholeDocument:
		return tooLarge(ch.Text)
	}
	return ""
}
