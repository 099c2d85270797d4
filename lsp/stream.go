package lsp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"

	"go.lsp.dev/jsonrpc2"
)

// MaxMessageBytes bounds one message from the editor. A larger one is read
// past and answered with an error, never held: the largest Go files people
// edit are a few megabytes, and the document itself is bounded tighter (see
// MaxDocumentBytes).
const MaxMessageBytes = 64 << 20

// NewStream returns the language server's stream over conn: LSP header
// framing, as jsonrpc2.NewStream, but a frame the connection cannot take
// does not end it. A body that is not JSON is answered with -32700 (Parse
// error), one that is JSON but no message with -32600 (Invalid Request),
// and one past MaxMessageBytes is skipped and answered with -32600; then the
// next frame is read. jsonrpc2 ends the connection on any of them, and with
// it the editor's session.
func NewStream(conn io.ReadWriteCloser) jsonrpc2.Stream {
	return &stream{in: bufio.NewReader(conn), out: jsonrpc2.NewHeaderStream(conn)}
}

// stream reads frames itself and leaves writing (serialized by the header
// stream) and closing to out.
type stream struct {
	in  *bufio.Reader
	out jsonrpc2.Stream
}

// ReadFrame returns the body of the next frame that decodes as a message or
// a batch. jsonrpc2's connection uses it when a stream has it, and decodes
// the body itself.
func (s *stream) ReadFrame(ctx context.Context) ([]byte, int64, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		length, header, err := readHeader(s.in)
		if err != nil {
			return nil, 0, err
		}
		if length > MaxMessageBytes {
			if _, err := io.CopyN(io.Discard, s.in, int64(length)); err != nil {
				return nil, 0, truncated(err)
			}
			s.refuse(ctx, jsonrpc2.InvalidRequest, fmt.Sprintf("riptrace lsp: a message of %d bytes is more than the %d it reads; it was skipped. Close files this large, or open them without the RipTrace extension", length, MaxMessageBytes))
			continue
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(s.in, body); err != nil {
			return nil, 0, truncated(err)
		}
		if i := bytes.IndexFunc(body, func(r rune) bool { return !strings.ContainsRune(" \t\r\n", r) }); i >= 0 && body[i] == '[' {
			return body, int64(header + length), nil // a batch: the connection answers each member
		}
		if _, err := jsonrpc2.DecodeMessage(body); err != nil {
			code, what := jsonrpc2.InvalidRequest, "is not a JSON-RPC message"
			if errors.Is(err, jsonrpc2.ErrParse) {
				code, what = jsonrpc2.ParseError, "is not JSON"
			}
			s.refuse(ctx, code, fmt.Sprintf("riptrace lsp: a message of %d bytes %s (%v); it was skipped and the session goes on", length, what, err))
			continue
		}
		return body, int64(header + length), nil
	}
}

// truncated is the error of a body cut short: a clean end of the
// connection there is not clean.
func truncated(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// refuse answers a frame that could not be read, with no id: which request
// it was is unknown.
func (s *stream) refuse(ctx context.Context, code jsonrpc2.Code, msg string) {
	s.out.Write(ctx, jsonrpc2.NewResponse(jsonrpc2.ID{}, nil, jsonrpc2.NewError(code, msg)))
}

func (s *stream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	body, n, err := s.ReadFrame(ctx)
	if err != nil {
		return nil, 0, err
	}
	msg, err := jsonrpc2.DecodeMessage(body)
	return msg, n, err
}

func (s *stream) Write(ctx context.Context, msg jsonrpc2.Message) (int64, error) {
	return s.out.Write(ctx, msg)
}

func (s *stream) Close() error { return s.out.Close() }

// readHeader reads one header block and returns the body's length and the
// header's.
func readHeader(in *bufio.Reader) (length, n int, err error) {
	length = -1
	for {
		line, err := in.ReadString('\n')
		n += len(line)
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF // the connection ended inside a header
			}
			return 0, 0, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return 0, 0, fmt.Errorf("reading a message header: %q has no colon", line)
		}
		if textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)) == "Content-Length" {
			if length, err = strconv.Atoi(strings.TrimSpace(value)); err != nil || length <= 0 {
				return 0, 0, fmt.Errorf("reading a message header: Content-Length %q is not a length", value)
			}
		}
	}
	if length < 0 {
		return 0, 0, errors.New("reading a message header: no Content-Length")
	}
	return length, n, nil
}
