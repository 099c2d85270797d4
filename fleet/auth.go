package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// PermissionError is a NATS permissions violation, told in RipTrace's terms:
// who was refused, what, and which role grants it.
type PermissionError struct {
	User    string // how the connection authenticated: `user "alice"`, `nkey UA…`
	Op      string // "publish" or "subscribe"; empty if nats.go's report did not say
	Subject string // or, without Op, nats.go's report
	Why     string // what the subject is for and who may use it
	// Fix is what to do when the fix is on the client's side (its inbox
	// prefix); empty: ask the NATS admin to grant the permission.
	Fix string
}

func (e *PermissionError) Error() string {
	msg := fmt.Sprintf("permission denied: %s may not %s to %s", e.User, e.Op, e.Subject)
	if e.Op == "" {
		msg = fmt.Sprintf("permission denied: %s: %s", e.User, e.Subject) // a violation nats.go words otherwise
	}
	if e.Why != "" {
		msg += " (" + e.Why + ")"
	}
	if e.Fix != "" {
		return msg + "; " + e.Fix
	}
	return msg + `; ask your NATS admin to grant it (README, "Auth and permissions", shows the layout RipTrace needs)`
}

// violationRe parses the server's -ERR as nats.go reports it.
var violationRe = regexp.MustCompile(`(?i)permissions violation for (publish|subscription) to "?([^"\s]+)"?`)

// parseViolation returns the PermissionError err reports, or nil.
func parseViolation(err error, user string, subj Subjects) *PermissionError {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	m := violationRe.FindStringSubmatch(err.Error())
	if m == nil {
		return &PermissionError{User: user, Subject: err.Error()}
	}
	op := "publish"
	if strings.EqualFold(m[1], "subscription") {
		op = "subscribe"
	}
	return &PermissionError{User: user, Op: op, Subject: m[2], Why: subj.explain(op, m[2])}
}

// explain says what subject is for in RipTrace and which role may use it.
func (s Subjects) explain(op, subject string) string {
	t := strings.Split(subject, ".")
	if len(t) == 4 && t[0] == s.Prefix {
		host := t[1]
		switch {
		case (t[2] == "hits" || t[2] == "marks") && op == "publish":
			return fmt.Sprintf("hits are published only by the agent of host %s", host)
		case t[2] == "hits" || t[2] == "marks":
			return "hits are read from the stream " + s.HitStream() + ", not from this subject"
		case op == "subscribe":
			return fmt.Sprintf("only the agent of host %s serves its requests", host)
		default:
			return "sending requests to agents is for editor and CLI users"
		}
	}
	kv := func(bucket string) (string, bool) {
		return strings.CutPrefix(subject, "$KV."+bucket+".")
	}
	if _, ok := kv(s.TracepointBucket()); ok {
		return "declaring and removing tracepoints is for editor and CLI users"
	}
	if key, ok := kv(s.StatusBucket()); ok {
		if k := strings.Split(key, "."); len(k) == 3 {
			return fmt.Sprintf("the status of host %s is written only by its agent", k[1])
		}
		return "status is written only by agents"
	}
	if key, ok := kv(s.HostBucket()); ok {
		return fmt.Sprintf("the heartbeat of host %s is written only by its agent", key)
	}
	if rest, ok := strings.CutPrefix(subject, "$JS.API."); ok {
		switch {
		case strings.HasPrefix(rest, "STREAM.CREATE.") || strings.HasPrefix(rest, "STREAM.UPDATE."):
			return "creating the hit stream and buckets is for `riptrace server` or an admin user; other users only look them up, with $JS.API.STREAM.INFO"
		case strings.Contains(rest, "."+s.HitStream()):
			return "reading hits is for editor and CLI users"
		case strings.Contains(rest, ".KV_"+s.TracepointBucket()):
			return "reading the declared tracepoints is for agents and editor and CLI users"
		case strings.Contains(rest, ".KV_"+s.StatusBucket()):
			return "reading tracepoint status is for editor and CLI users"
		case strings.Contains(rest, ".KV_"+s.HostBucket()):
			return "listing hosts is for editor and CLI users"
		}
		return "a JetStream API call RipTrace does not need"
	}
	if strings.HasPrefix(subject, "_INBOX") {
		return "each user receives its replies under its own inbox prefix, _INBOX_<user> in RipTrace's layout, and may not subscribe to another's"
	}
	return ""
}

// permWatch turns the permission violations a server reports on a
// connection into PermissionErrors, logs them, and fails the calls waiting
// on the refused subjects at once instead of at their timeout.
type permWatch struct {
	user  string
	subj  Subjects
	prev  nats.ErrHandler
	inbox string // the pattern of this connection's reply subjects
	// custom is the connection's own inbox prefix, if it has one; name is
	// the user's name, for the prefix the layout gives it.
	custom, name string

	// mu guards the fields below.
	mu        sync.Mutex
	waiters   map[*permWaiter]struct{}
	first     *PermissionError // the first refusal not expected by a caller
	noReplies *PermissionError // a refused subscription to this connection's inbox
}

type permWaiter struct {
	patterns []string
	cancel   context.CancelCauseFunc
	quiet    bool // the refusal is expected and handled: do not log it
}

// watchPermissions installs the violation handler on nc, keeping the one in
// place (if any) informed.
func watchPermissions(nc *nats.Conn, subj Subjects) *permWatch {
	w := &permWatch{user: describeUser(&nc.Opts), subj: subj, prev: nc.Opts.AsyncErrorCB, inbox: inbox, waiters: make(map[*permWaiter]struct{})}
	w.custom, w.name = nc.Opts.InboxPrefix, userName(&nc.Opts)
	if nc.Opts.InboxPrefix != "" {
		w.inbox = nc.Opts.InboxPrefix + ".>"
	}
	nc.SetErrorHandler(w.handle)
	return w
}

// parse returns the PermissionError err reports, or nil; a refused
// subscription to this connection's inbox says how to fix it.
func (w *permWatch) parse(err error) *PermissionError {
	pe := parseViolation(err, w.user, w.subj)
	if pe != nil && pe.Op == "subscribe" && subjectMatches(w.inbox, pe.Subject) {
		pe.Fix = w.inboxFix()
	}
	return pe
}

// inboxFix says how to run a client whose inbox the server refused.
func (w *permWatch) inboxFix() string {
	want := "_INBOX_<user>"
	if w.name != "" {
		want = UserInboxPrefix(w.name)
	}
	switch w.custom {
	case "":
		return fmt.Sprintf("run with --inbox-prefix %s, the prefix RipTrace's layout gives this user, or the one your NATS admin gave it (or $RIPTRACE_INBOX_PREFIX; nats.inboxPrefix in the agent's config file, inboxPrefix in the editor's settings)", want)
	case want:
		return fmt.Sprintf("the server does not give this user the prefix %s of RipTrace's layout: ask your NATS admin to let it subscribe to %s.> (deploy/nats.conf), or run without --inbox-prefix if the server gives every user _INBOX", want, want)
	}
	return fmt.Sprintf("the server does not give this user the inbox prefix %s: run with --inbox-prefix %s, the prefix RipTrace's layout gives it, or the one your NATS admin gave it (none if the server gives every user _INBOX)", w.custom, want)
}

func (w *permWatch) handle(nc *nats.Conn, sub *nats.Subscription, err error) {
	if pe := w.parse(err); pe != nil {
		quiet := false
		w.mu.Lock()
		for wt := range w.waiters {
			if matchesAny(wt.patterns, pe.Subject) {
				wt.cancel(pe)
				quiet = quiet || wt.quiet
			}
		}
		if !quiet && w.first == nil {
			w.first = pe
		}
		if pe.Op == "subscribe" && subjectMatches(w.inbox, pe.Subject) {
			// nats.go keeps one reply subscription: every later request
			// would wait for replies that cannot come.
			w.noReplies = pe
		}
		w.mu.Unlock()
		if quiet {
			return
		}
		if w.prev == nil {
			slog.Error(pe.Error())
		}
		err = pe
	}
	if w.prev != nil {
		w.prev(nc, sub, err)
	}
}

// Refused returns the first permission violation the server reported on
// this client's connection, if any. A server answers a refused subscription
// only asynchronously: an agent checks Refused after subscribing and
// flushing, so that serving with the wrong user fails at once.
func (c *Client) Refused() error {
	if c.perms == nil {
		return nil
	}
	c.perms.mu.Lock()
	first := c.perms.first
	c.perms.mu.Unlock()
	if first != nil {
		return first
	}
	// The handler runs on nats.go's callback goroutine, maybe not yet; the
	// connection's last error is set before a flush returns.
	pe := c.perms.parse(c.nc.LastError())
	if pe == nil || matchesAny(createPatterns, pe.Subject) {
		return nil
	}
	return pe
}

// guard returns a context that a violation on a subject matching one of
// patterns cancels, with the PermissionError as its cause, and a release
// that stops watching and cancels it: for calls that are done when they
// return.
func (w *permWatch) guard(ctx context.Context, patterns ...string) (context.Context, func()) {
	return w.watch(ctx, false, true, patterns)
}

// guardLive is guard for calls whose result lives on with the context (a
// key-value watch): release stops watching and leaves it be.
func (w *permWatch) guardLive(ctx context.Context, patterns ...string) (context.Context, func()) {
	return w.watch(ctx, false, false, patterns)
}

func (w *permWatch) watch(ctx context.Context, quiet, cancelOnRelease bool, patterns []string) (context.Context, func()) {
	if w == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	wt := &permWaiter{patterns: patterns, cancel: cancel, quiet: quiet}
	w.mu.Lock()
	w.waiters[wt] = struct{}{}
	if w.noReplies != nil && slices.Contains(patterns, w.inbox) {
		cancel(w.noReplies)
	}
	w.mu.Unlock()
	return ctx, func() {
		w.mu.Lock()
		delete(w.waiters, wt)
		w.mu.Unlock()
		if cancelOnRelease {
			cancel(nil)
		}
	}
}

// denied returns the PermissionError that cancelled ctx, if one did, in
// place of err.
func denied(ctx context.Context, err error) error {
	var pe *PermissionError
	if err != nil && errors.As(context.Cause(ctx), &pe) {
		return pe
	}
	return err
}

// jsPatterns are the subjects JetStream calls on bucket or stream publish
// to and receive on.
func (w *permWatch) jsPatterns(extra ...string) []string {
	in := inbox
	if w != nil {
		in = w.inbox
	}
	return append([]string{"$JS.API.>", "$JS.FC.>", in}, extra...)
}

// replies is the pattern of the connection's reply subjects.
func (w *permWatch) replies() string {
	if w == nil {
		return inbox
	}
	return w.inbox
}

// matchesAny reports whether subject matches one of the NATS patterns.
func matchesAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}

// subjectMatches matches a literal subject against a pattern with NATS
// wildcards ('*' one token, '>' the rest).
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// connectError says why dialing NATS failed and what to check.
func connectError(url string, opts []nats.Option, err error) error {
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "authorization violation") || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked):
		o := nats.GetDefaultOptions()
		for _, opt := range opts {
			opt(&o)
		}
		who := describeUser(&o)
		if who == anonymous {
			return fmt.Errorf("connecting to NATS at %s: %w: the server wants credentials: give a user and password, token, nkey seed, creds file or TLS client certificate", url, err)
		}
		return fmt.Errorf("connecting to NATS at %s as %s: %w: the server refused these credentials; check the user and password, token, nkey seed, creds file or TLS client certificate given, and that the server's configuration has that user", url, who, err)
	case strings.Contains(msg, "tls") || strings.Contains(msg, "x509:"):
		return fmt.Errorf("connecting to NATS at %s: %w (a TLS failure: check the CA that verifies the server, and whether the server wants a client certificate and key: --tls-ca, --tls-cert, --tls-key)", url, err)
	}
	return fmt.Errorf("connecting to NATS at %s: %w (start one with `riptrace server`, or pass --nats / RIPTRACE_NATS)", url, err)
}

// describeUser says how a connection authenticates, for error messages.
func describeUser(o *nats.Options) string {
	switch {
	case o.User != "":
		return fmt.Sprintf("user %q", o.User)
	case o.UserJWT != nil:
		if tok, err := o.UserJWT(); err == nil {
			if uc, err := jwt.DecodeUserClaims(tok); err == nil {
				if uc.Name != "" {
					return fmt.Sprintf("user %q (%s)", uc.Name, uc.Subject)
				}
				return "user " + uc.Subject
			}
		}
		return "the user of the credentials file"
	case o.Nkey != "":
		return "nkey " + o.Nkey
	case o.TLSCertCB != nil:
		if cert, err := o.TLSCertCB(); err == nil {
			if name := certName(cert); name != "" {
				return fmt.Sprintf("certificate %q", name)
			}
		}
		return "the client certificate's user"
	case o.Token != "" || o.TokenHandler != nil:
		return "the token's user"
	}
	return anonymous
}

const anonymous = "an anonymous user"

// userName is the name of the user a connection authenticates as, as a
// server configuration names it (an nkey user by its public key), or "".
func userName(o *nats.Options) string {
	switch {
	case o.User != "":
		return o.User
	case o.UserJWT != nil:
		if tok, err := o.UserJWT(); err == nil {
			if uc, err := jwt.DecodeUserClaims(tok); err == nil {
				if uc.Name != "" {
					return uc.Name
				}
				return uc.Subject
			}
		}
	case o.Nkey != "":
		return o.Nkey
	case o.TLSCertCB != nil:
		if cert, err := o.TLSCertCB(); err == nil {
			return certName(cert)
		}
	}
	return ""
}

func certName(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return ""
	}
	return leaf.Subject.String()
}
