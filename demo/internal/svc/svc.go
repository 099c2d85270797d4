// Package svc is what the demo services share: serving with the READY line and
// a clean shutdown, JSON endpoints that turn errors and panics into JSON error
// answers, and JSON calls from one service to the next.
package svc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Error is an error with an HTTP status. It crosses the wire as
// {"error": Msg} with that status, and PostJSON turns it back into an Error.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error with the given status and formatted message.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Run serves h on the listen address until SIGINT or SIGTERM, then shuts down
// gracefully. Once listening it prints "READY pid=<pid> addr=<host:port>" to
// stdout, the one line tests and `riptrace demo` wait for.
func Run(listen string, h http.Handler) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Printf("READY pid=%d addr=%s\n", os.Getpid(), ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// Handle returns a POST endpoint that decodes a Req, calls fn and encodes its
// answer. Errors become {"error": ...} with the *Error's status (500 for other
// errors); a panic in fn answers 500 instead of killing the connection.
func Handle[Req, Resp any](fn func(context.Context, *Req) (*Resp, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status := http.StatusOK
		defer func() {
			if p := recover(); p != nil {
				status = writeError(w, Errorf(http.StatusInternalServerError, "internal error: %v", p))
			}
			log.Printf("%s %s %d %s", r.Method, r.URL.Path, status, time.Since(start).Round(time.Microsecond))
		}()
		if r.Method != http.MethodPost {
			status = writeError(w, Errorf(http.StatusMethodNotAllowed, "%s %s: use POST", r.Method, r.URL.Path))
			return
		}
		var req Req
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			status = writeError(w, Errorf(http.StatusBadRequest, "decoding request: %v", err))
			return
		}
		resp, err := fn(r.Context(), &req)
		if err != nil {
			status = writeError(w, err)
			return
		}
		writeJSON(w, status, resp)
	})
}

func writeError(w http.ResponseWriter, err error) int {
	status := http.StatusInternalServerError
	if e := (*Error)(nil); errors.As(err, &e) {
		status = e.Status
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
	return status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("writing answer: %v", err)
	}
}

// PostJSON posts in as JSON to url and decodes the answer into out. An error
// answer comes back as an *Error with the same status, except that failures of
// the downstream service itself (5xx, unreachable) become 502 Bad Gateway.
func PostJSON(ctx context.Context, url string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encoding request to %s: %w", url, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("calling %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Errorf(http.StatusBadGateway, "%v", err) // says "Post <url>: ..."
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
			e.Error = resp.Status
		}
		status := resp.StatusCode
		if status >= 500 {
			status = http.StatusBadGateway
		}
		return Errorf(status, "%s: %s", url, e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return Errorf(http.StatusBadGateway, "decoding answer from %s: %v", url, err)
	}
	return nil
}
