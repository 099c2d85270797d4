package lsp

import (
	"context"
	"fmt"
	"strings"

	"go.lsp.dev/protocol"
)

// Following the editor's buffers: didOpen, didChange and didClose,
// grouped as gopls groups them.

// Bounds on a buffer the server follows. Each line costs a string header
// and a position (24 bytes), so a 20 MB file of short lines cost some
// 390 MB; past either bound the buffer is not followed, and the editor is
// told so. No Go file anyone edits by hand comes near them.
const (
	MaxDocumentBytes = 8 << 20
	MaxDocumentLines = 200_000
)

// DidOpen starts following a buffer: hits are placed on its lines as they
// were when it opened, moved by later edits.
func (s *server) DidOpen(ctx context.Context, params *protocol.DidOpenTextDocumentParams) error {
	path := localPath(params.TextDocument.URI)
	if why := tooLarge(params.TextDocument.Text); why != "" {
		s.unfollow(ctx, path, why)
		return nil
	}
	s.mu.Lock()
	s.docs[path] = newDocument(params.TextDocument.Text)
	s.mu.Unlock()
	return nil
}

// tooLarge says why a buffer of text is past the bounds, or "".
func tooLarge(text string) string {
	if len(text) > MaxDocumentBytes {
		return fmt.Sprintf("it has %d bytes, more than the %d riptrace lsp follows", len(text), MaxDocumentBytes)
	}
	if n := strings.Count(text, "\n") + 1; n > MaxDocumentLines {
		return fmt.Sprintf("it has %d lines, more than the %d riptrace lsp follows", n, MaxDocumentLines)
	}
	return ""
}

// unfollow stops following the buffer at path and tells the editor why.
func (s *server) unfollow(ctx context.Context, path, why string) {
	s.mu.Lock()
	delete(s.docs, path)
	s.mu.Unlock()
	s.log.Warn("not following a buffer", "path", path, "why", why)
	s.client.ShowMessage(ctx, &protocol.ShowMessageParams{
		Type:    protocol.MessageTypeWarning,
		Message: fmt.Sprintf("RipTrace shows no hits in %s: %s. Split the file, or trace it with riptrace trace.", path, why),
	})
}

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

// DidClose stops following a buffer; the file on disk is used again.
func (s *server) DidClose(ctx context.Context, params *protocol.DidCloseTextDocumentParams) error {
	s.mu.Lock()
	delete(s.docs, localPath(params.TextDocument.URI))
	s.mu.Unlock()
	return nil
}
