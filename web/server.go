package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

//go:embed static
var static embed.FS

// Options configure a Server.
type Options struct {
	// Token is the bearer token every /api/ request must carry, unless
	// it carries the name and password of one of Users (HTTP basic).
	Token string
	// Users, if not nil, may sign in with HTTP basic credentials instead;
	// each owns the tracepoints set from its pages. Serve them over TLS
	// or on loopback only: basic credentials travel in the clear.
	Users *Users
	// ReadOnly refuses every request that changes the fleet.
	ReadOnly bool
	// Sources reads the services' repositories; nil serves no code.
	Sources *Sources
	// Group names captured values that say which request a hit belongs
	// to (fleet.GroupBy); tracepoints set from the page add theirs.
	Group []string
	// LeaseTTL is how long a page's tracepoints outlive the server if it
	// dies; Grace how long they outlive the page's event stream (a reload
	// reconnects within it).
	LeaseTTL, Grace time.Duration
	// FleetEvery is how often the pages' view of the hosts is refreshed
	// (their changes come at once, from the host bucket); TracepointsEvery
	// how often the tracepoints are read.
	FleetEvery, TracepointsEvery time.Duration
	// Log receives what goes wrong; nil discards it.
	Log *slog.Logger
}

// Server serves the page and its API. See the package doc for its
// goroutines.
type Server struct {
	c    *fleet.Client
	opts Options
	hub  *hub
	mux  *http.ServeMux

	// mu guards sessions.
	mu       sync.Mutex
	sessions map[string]*session
}

// session is one open page: its tracepoints live in its lease.
type session struct {
	id string
	// user is who signed in on the page (Options.Users), "" for the
	// token: requests of another credential may not use the session.
	user  string
	lease *fleet.Lease
	// streams counts the page's open event streams; gone fires Grace
	// after the last one closed.
	streams int
	gone    *time.Timer
}

// owner is the owner of the tracepoints set from the page: its user, or
// for the token a piece of its session id.
func (ss *session) owner() string {
	if ss.user != "" {
		return ownerPrefix + ss.user
	}
	return ownerPrefix + ss.id[:8]
}

// maxSessions bounds the pages one server keeps leases for.
const maxSessions = 256

// ownerPrefix starts the owner of every tracepoint set from a page.
const ownerPrefix = "web:"

// NewToken returns a random bearer token.
func NewToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// New returns a Server on the fleet client c. Call Run to read the fleet.
func New(c *fleet.Client, opts Options) (*Server, error) {
	if len(opts.Token) < 16 {
		return nil, errors.New("the web page's token is shorter than 16 characters. Use a longer one, or leave --ui-token-file out to get a random one")
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = time.Minute
	}
	if opts.Grace <= 0 {
		opts.Grace = 15 * time.Second
	}
	if opts.FleetEvery <= 0 {
		opts.FleetEvery = 2 * time.Second
	}
	if opts.TracepointsEvery <= 0 {
		opts.TracepointsEvery = 500 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Sources == nil {
		opts.Sources = NewSources("", nil, nil)
	}
	s := &Server{c: c, opts: opts, sessions: make(map[string]*session)}
	s.hub = newHub(c, &s.opts, opts.Sources)
	s.hub.until = s.until
	s.routes()
	return s, nil
}

// Run reads the fleet for the pages until ctx ends, then closes every
// page's lease.
func (s *Server) Run(ctx context.Context) {
	s.hub.run(ctx)
	s.mu.Lock()
	sessions := s.sessions
	s.sessions = map[string]*session{}
	s.mu.Unlock()
	for _, ss := range sessions {
		if ss.gone != nil {
			ss.gone.Stop()
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ss.lease.Close(cctx)
		cancel()
	}
}

// maxBody bounds every request body the API reads.
const maxBody = 64 << 10

// codeBodyTooLarge is the error code of a body over maxBody (413).
const codeBodyTooLarge = "body_too_large"

// codeForbidden is the error code of a request its credential may not
// make (403).
const codeForbidden = "forbidden"

// ServeHTTP answers every /api/ request without a credential with 401 before
// looking at its path, recovers panics, and routes the rest.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Log.Error("panic serving the web page", "path", r.URL.Path, "panic", p)
			writeError(w, http.StatusInternalServerError, fleet.CodeInternal, fmt.Sprintf("internal error serving %s: %v. This is a bug: please report it with the server's log", r.URL.Path, p))
		}
	}()
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	// The path is read as sent and as the router cleans it, so that no
	// spelling of an /api/ path (//api/x, /a/../api/x) escapes the check.
	if isAPI(r.URL.Path) || isAPI(path.Clean("/"+r.URL.Path)) {
		user, ok := s.authorized(r)
		if !ok {
			// No Basic challenge even with users: a browser would answer
			// it with its own dialog over the page's sign-in form, then
			// send the credentials with every request, from any site.
			w.Header().Set("WWW-Authenticate", `Bearer realm="riptrace"`)
			msg := "this needs the page's token. Open the URL riptrace server printed at start, with its #token"
			if s.opts.Users != nil {
				msg = "this needs the page's token or a user's name and password. Sign in, or open the URL riptrace server printed at start, with its #token"
			}
			writeError(w, http.StatusUnauthorized, "unauthorized", msg)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), userKey{}, user))
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	} else {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
	}
	s.mux.ServeHTTP(w, r)
}

func isAPI(p string) bool { return p == "/api" || strings.HasPrefix(p, "/api/") }

// userKey keys the signed-in user's name in a request's context.
type userKey struct{}

// authorized checks the request's credential: the bearer token, compared
// in constant time, or the name and password of one of Options.Users. It
// returns the user's name, "" for the token.
func (s *Server) authorized(r *http.Request) (user string, ok bool) {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return "", subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
	}
	if s.opts.Users == nil {
		return "", false
	}
	name, password, ok := r.BasicAuth()
	if !ok || !s.opts.Users.Check(name, password) {
		return "", false
	}
	return name, true
}

// requestUser is the name of the user who signed in for r, "" for the
// token.
func requestUser(r *http.Request) string {
	u, _ := r.Context().Value(userKey{}).(string)
	return u
}

func (s *Server) routes() {
	m := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "the page only answers GET", http.StatusMethodNotAllowed)
			return
		}
		files.ServeHTTP(w, r)
	})
	m.HandleFunc("GET /api/fleet", s.getFleet)
	m.HandleFunc("GET /api/tracepoints", s.getTracepoints)
	m.HandleFunc("POST /api/tracepoints", s.changing(s.postTracepoint))
	m.HandleFunc("PUT /api/tracepoints/{id}", s.changing(s.putTracepoint))
	m.HandleFunc("DELETE /api/tracepoints/{id}", s.changing(s.deleteTracepoint))
	m.HandleFunc("GET /api/tree", s.getTree)
	m.HandleFunc("GET /api/file", s.getFile)
	m.HandleFunc("POST /api/fetch", s.changing(s.postFetch))
	m.HandleFunc("GET /api/events", s.getEvents)
	m.HandleFunc("GET /api/config", s.getConfig)
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s %s is not part of the API", r.Method, r.URL.Path))
	})
	s.mux = m
}

// changing wraps a handler that changes the fleet: refused on a read-only
// page, and only for JSON bodies (a form post from another site cannot
// send one without a CORS preflight, which this server never answers).
func (s *Server) changing(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.ReadOnly {
			writeError(w, http.StatusForbidden, "read_only", "this page is read-only (--ui-readonly). Ask whoever runs the server for a page that may trace")
			return
		}
		if ct := r.Header.Get("Content-Type"); r.Method != http.MethodDelete && !strings.HasPrefix(ct, "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, fleet.CodeBadRequest, fmt.Sprintf("the body is %q. Send application/json", ct))
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// apiError is every error the API answers.
type apiError struct {
	Error fleet.Error `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{fleet.Error{Code: code, Message: msg}})
}

// decode reads a JSON body into v strictly: one object, no unknown
// fields, within maxBody.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fleet.Errorf(codeBodyTooLarge, "the body is larger than %d bytes. Send less", maxBody)
	}
	if err != nil {
		return fleet.Errorf(fleet.CodeBadRequest, "reading the body: %v", err)
	}
	return decodeBytes(b, v)
}

func decodeBytes(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fleet.Errorf(fleet.CodeBadRequest, "malformed body: %v. Send one JSON object", err)
	}
	if dec.More() {
		return fleet.Errorf(fleet.CodeBadRequest, "the body has more than one JSON value. Send one object")
	}
	return nil
}

func writeFleetError(w http.ResponseWriter, err error) {
	fe := fleet.AsError(err)
	status := http.StatusBadGateway
	switch fe.Code {
	case fleet.CodeBadRequest, fleet.CodeBadCondition, fleet.CodeTooLarge, fleet.CodeUnsafeExpr:
		status = http.StatusBadRequest
	case codeBodyTooLarge:
		status = http.StatusRequestEntityTooLarge
	case codeForbidden:
		status = http.StatusForbidden
	}
	writeJSON(w, status, apiError{*fe})
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"readOnly": s.opts.ReadOnly, "group": s.opts.Group, "user": requestUser(r)})
}

func (s *Server) getFleet(w http.ResponseWriter, r *http.Request) {
	s.hub.mu.Lock()
	hosts := s.hub.hosts
	s.hub.mu.Unlock()
	writeJSON(w, http.StatusOK, s.hub.view(hosts))
}

func (s *Server) getTracepoints(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.hub.tracepoints())
}

// sessionRe is a page's session id: the page makes it up and keeps it
// across reloads.
var sessionRe = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)

// session returns the page's session named in the X-RipTrace-Session
// header, making it if it is new.
func (s *Server) session(r *http.Request) (*session, error) {
	id := r.Header.Get("X-RipTrace-Session")
	if !sessionRe.MatchString(id) {
		return nil, fleet.Errorf(fleet.CodeBadRequest, "the X-RipTrace-Session header %q is not a session id (16 to 64 letters, digits, - or _). Reload the page", id)
	}
	user := requestUser(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[id]; ss != nil {
		if ss.user != user {
			return nil, fleet.Errorf(codeForbidden, "this page's session was opened by another user. Reload the page")
		}
		return ss, nil
	}
	if len(s.sessions) >= maxSessions {
		return nil, fleet.Errorf(fleet.CodeTooLarge, "%d pages are open on this server already. Close some", maxSessions)
	}
	ss := &session{id: id, user: user, lease: s.c.NewLease(s.opts.LeaseTTL)}
	s.sessions[id] = ss
	// A page that never opens its event stream goes away like one that
	// closed it.
	ss.gone = time.AfterFunc(s.opts.Grace, func() { s.endSession(ss) })
	return ss, nil
}

// streamOpened and streamClosed count a page's event streams: the lease
// ends Grace after the last one closed.
func (s *Server) streamOpened(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.streams++
	if ss.gone != nil {
		ss.gone.Stop()
		ss.gone = nil
	}
}

func (s *Server) streamClosed(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss.streams--
	if ss.streams == 0 && s.sessions[ss.id] == ss {
		ss.gone = time.AfterFunc(s.opts.Grace, func() { s.endSession(ss) })
	}
}

// endSession removes a page's tracepoints: it has been gone for Grace.
func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.id] != ss || ss.streams > 0 {
		s.mu.Unlock()
		return
	}
	delete(s.sessions, ss.id)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ss.lease.Close(ctx); err != nil {
		s.opts.Log.Warn("removing the tracepoints of a closed page", "session", ss.id, "err", err)
	}
}

// getEvents streams server-sent events to a page: "hello" with its
// session, then "fleet" and "tracepoints" (each the whole state, when it
// changes), "hit" (each hit in execution order), "notice", and "lost"
// (how many events a slow page missed). A comment line every 15 s keeps
// proxies from closing it.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	ss, err := s.session(r)
	if err != nil {
		writeFleetError(w, err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fleet.CodeInternal, "this connection cannot stream events")
		return
	}
	s.streamOpened(ss)
	defer s.streamClosed(ss)
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)

	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	hello, _ := json.Marshal(map[string]any{"session": ss.id, "readOnly": s.opts.ReadOnly, "user": ss.user})
	fmt.Fprintf(w, "event: hello\ndata: %s\n\n", hello)
	fl.Flush()
	rc := http.NewResponseController(w)
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			io.WriteString(w, ": keep-alive\n\n")
		case <-sub.wake:
			for _, ev := range sub.take() {
				fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.event, ev.data)
			}
		}
		// A page that stops reading is cut off rather than held forever.
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// TracepointRequest is the body of POST /api/tracepoints: a line of a
// file as one revision of a module has it, and what to do there.
type TracepointRequest struct {
	Module   string `json:"module"`
	Revision string `json:"revision"`
	// Path is the file's slash path from the repository's top.
	Path             string `json:"path"`
	Line             int    `json:"line"`
	Condition        string `json:"condition,omitempty"`
	HitCondition     string `json:"hitCondition,omitempty"`
	LogMessage       string `json:"logMessage,omitempty"`
	MaxHits          int    `json:"maxHits,omitempty"`
	MaxHitsPerSecond int    `json:"maxHitsPerSecond,omitempty"`
	Backend          string `json:"backend,omitempty"`
	// Group is a Go expression naming the request a hit belongs to (an
	// order id): captured with each hit, and hits are grouped by it.
	Group string `json:"group,omitempty"`
	// Hosts are host globs to trace on; all hosts when empty.
	Hosts []string `json:"hosts,omitempty"`
	// Expiry ends the tracepoint: a duration from now ("30m") or a time
	// (RFC 3339). Without it, it ends when its page goes away.
	Expiry string `json:"expiry,omitempty"`
}

// TracepointReply answers POST /api/tracepoints.
type TracepointReply struct {
	Spec fleet.Spec `json:"spec"`
	// Refused says, per running revision, why the line is not traced
	// there; Lines the line it is traced at in each other revision.
	Refused map[string]string `json:"refused,omitempty"`
	Lines   map[string]int    `json:"lines,omitempty"`
	Warning string            `json:"warning,omitempty"`
}

// validate checks what the fleet's own validation does not see.
func (q *TracepointRequest) validate() error {
	switch {
	case q.Module == "":
		return fleet.Errorf(fleet.CodeBadRequest, "no module: say which service's code the line is in")
	case !revisionRe.MatchString(q.Revision):
		return fleet.Errorf(fleet.CodeBadRequest, "revision %q is not a full commit hash. Pick a revision the fleet runs", q.Revision)
	case q.Line <= 0:
		return fleet.Errorf(fleet.CodeBadRequest, "line %d is not a line number (lines start at 1)", q.Line)
	case len(q.Hosts) > 64:
		return fleet.Errorf(fleet.CodeTooLarge, "%d host globs: give at most 64", len(q.Hosts))
	}
	return nil
}

func (s *Server) postTracepoint(w http.ResponseWriter, r *http.Request) {
	ss, err := s.session(r)
	if err != nil {
		writeFleetError(w, err)
		return
	}
	var q TracepointRequest
	if err := decode(r, &q); err != nil {
		writeFleetError(w, err)
		return
	}
	if err := q.validate(); err != nil {
		writeFleetError(w, err)
		return
	}
	until, err := parseExpiry(q.Expiry, time.Now())
	if err != nil {
		writeFleetError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	res, err := s.opts.Sources.Locate(ctx, s.resolver(), q.Module, q.Revision, q.Path, q.Line)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{fleet.Error{Code: "no_source", Message: err.Error()}})
		return
	}
	loc := res.Locations[0]
	spec := fleet.Spec{
		ID:           "web-" + NewToken()[:12],
		Location:     loc,
		Selector:     fleet.Selector{Hosts: q.Hosts},
		Condition:    q.Condition,
		HitCondition: q.HitCondition,
		LogMessage:   q.LogMessage,
		Capture:      fleet.DefaultCapture,
		Limits:       fleet.Limits{MaxHits: q.MaxHits, MaxHitsPerSecond: q.MaxHitsPerSecond},
		Owner:        ss.owner(),
		Backend:      q.Backend,
	}
	if q.Group != "" {
		spec.Capture.Exprs = []string{q.Group}
	}
	spec.Selector.Processes = s.programsWith(ctx, loc)
	if err := ss.lease.DeclareUntil(ctx, &spec, until); err != nil {
		writeFleetError(w, err)
		return
	}
	if q.Group != "" {
		s.hub.addGroup(q.Group)
	}
	reply := TracepointReply{Spec: spec, Refused: loc.Refused, Lines: loc.Lines}
	if res.FleetErr != nil {
		reply.Warning = res.FleetErr.Error()
	}
	writeJSON(w, http.StatusCreated, reply)
}

// programsWith returns the main packages of the fleet's programs of
// loc's module whose sources include loc's file, so that the tracepoint
// goes to them (and to their restarts) and not to every program of the
// module, which would each report that it lacks the file. The hosts that
// run the module are asked at once, through the hub's HostWatch, which
// keeps each answer until the host's processes change: a hundred hosts
// cost one round trip, and the next click none. If the fleet cannot tell
// within 5 s, or no program has the file, it returns nil: every program
// is asked, and says why not.
func (s *Server) programsWith(ctx context.Context, loc fleet.Location) []string {
	hw := s.hub.hostWatch()
	if hw == nil {
		return nil
	}
	s.hub.mu.Lock()
	hosts := s.hub.hosts
	s.hub.mu.Unlock()
	runs := map[string]bool{}
	for _, h := range hosts {
		if h.Gone || h.Profile == nil {
			continue
		}
		for _, p := range h.Profile.Processes {
			if p.Module == loc.Module {
				runs[h.Name] = true
			}
		}
	}
	if len(runs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	entries, err := hw.ProfilesFiles(ctx, func(host string) bool { return runs[host] })
	if err != nil {
		return nil
	}
	suffix := "/" + loc.Path
	seen := map[string]bool{}
	var mains []string
	for _, e := range entries {
		if e.Profile == nil {
			return nil // a host that did not answer may run it
		}
		for _, proc := range e.Profile.Processes {
			if proc.Module != loc.Module || proc.MainPackage == "" || seen[proc.MainPackage] {
				continue
			}
			for _, f := range proc.Files {
				if strings.HasSuffix(f, suffix) || f == loc.Path {
					seen[proc.MainPackage] = true
					mains = append(mains, proc.MainPackage)
					break
				}
			}
		}
	}
	sort.Strings(mains)
	return mains
}

// resolver is what lines are mapped into the running revisions with: the
// hub's HostWatch, which answers from the profiles it keeps, or the
// client before the watch runs.
func (s *Server) resolver() source.Fleet {
	if hw := s.hub.hostWatch(); hw != nil {
		return hw
	}
	return s.c
}

// EditRequest is the body of PUT /api/tracepoints/{id}: what a tracepoint
// does at its line, replaced whole.
type EditRequest struct {
	Condition        string `json:"condition,omitempty"`
	HitCondition     string `json:"hitCondition,omitempty"`
	LogMessage       string `json:"logMessage,omitempty"`
	MaxHits          int    `json:"maxHits,omitempty"`
	MaxHitsPerSecond int    `json:"maxHitsPerSecond,omitempty"`
	Backend          string `json:"backend,omitempty"`
	// Expiry is TracepointRequest's: empty, a tracepoint of a page ends
	// with the page.
	Expiry string `json:"expiry,omitempty"`
}

// maxExpiry bounds how far ahead a page may set a tracepoint's end.
const maxExpiry = 30 * 24 * time.Hour

// parseExpiry reads an expiry from a form: a duration from now ("90s",
// "30m", "2h") or a time in RFC 3339 ("2026-12-05T10:00:00Z"). Empty is
// none: the zero time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	var at time.Time
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fleet.Errorf(fleet.CodeBadRequest, "expiry %q is not ahead of now. Give a positive duration such as 30m, or leave it empty", s)
		}
		at = now.Add(d)
	} else if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return time.Time{}, fleet.Errorf(fleet.CodeBadRequest, "expiry %s has passed already. Give a later time, or a duration such as 30m", t.UTC().Format(time.RFC3339))
		}
		at = t
	} else {
		return time.Time{}, fleet.Errorf(fleet.CodeBadRequest, "expiry %q is neither a duration (30m, 2h) nor a time (2026-12-05T10:00:00Z). Give one of them, or leave it empty", s)
	}
	if at.Sub(now) > maxExpiry {
		return time.Time{}, fleet.Errorf(fleet.CodeBadRequest, "expiry %q is more than %d days ahead. Give a nearer one: a tracepoint is for a debugging session", s, int(maxExpiry.Hours()/24))
	}
	return at.UTC(), nil
}

// putTracepoint edits a declared tracepoint in place: same id, line and
// owner; agents reinstall it with the new condition, message or limits.
func (s *Server) putTracepoint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var q EditRequest
	if err := decode(r, &q); err != nil {
		writeFleetError(w, err)
		return
	}
	until, err := parseExpiry(q.Expiry, time.Now())
	if err != nil {
		writeFleetError(w, err)
		return
	}
	s.hub.mu.Lock()
	spec, ok := s.hub.specs[id]
	s.hub.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no tracepoint %q is declared. It may have been removed or expired", id))
		return
	}
	spec.Condition, spec.HitCondition, spec.LogMessage, spec.Backend = q.Condition, q.HitCondition, q.LogMessage, q.Backend
	spec.Limits.MaxHits, spec.Limits.MaxHitsPerSecond = q.MaxHits, q.MaxHitsPerSecond
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if owner := s.owner(id); owner != nil {
		err = owner.lease.DeclareUntil(ctx, &spec, until)
	} else {
		// Another owner's tracepoint keeps its expiry unless a new one
		// is given: that owner may be renewing it.
		if !until.IsZero() {
			spec.Limits.ExpiresAt = until
		}
		err = s.c.Declare(ctx, &spec)
	}
	if err != nil {
		writeFleetError(w, err)
		return
	}
	// The pages are told even if only the expiry changed, which the
	// hub's comparison of specs leaves out.
	s.hub.markDirty()
	writeJSON(w, http.StatusOK, spec)
}

// until returns when tracepoint id ends by its user's will, if a page of
// this server set an expiry for it; zero otherwise.
func (s *Server) until(id string) time.Time {
	if ss := s.owner(id); ss != nil {
		t, _ := ss.lease.Until(id)
		return t
	}
	return time.Time{}
}

// owner returns the page whose lease holds tracepoint id, or nil.
func (s *Server) owner(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		for _, held := range ss.lease.IDs() {
			if held == id {
				return ss
			}
		}
	}
	return nil
}

func (s *Server) deleteTracepoint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || fleet.Token(id) != id {
		writeError(w, http.StatusBadRequest, fleet.CodeBadRequest, fmt.Sprintf("%q is not a tracepoint id", id))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	// The page that set it stops renewing it; any other tracepoint goes
	// from the fleet directly.
	owner := s.owner(id)
	var err error
	if owner != nil {
		err = owner.lease.Remove(ctx, id)
	} else {
		err = s.c.Remove(ctx, id)
	}
	if err != nil {
		writeFleetError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sourceQuery reads module, rev and path from the query string.
func sourceQuery(r *http.Request) (module, rev, path string, err error) {
	q := r.URL.Query()
	module, rev, path = q.Get("module"), q.Get("rev"), q.Get("path")
	if module == "" || len(module) > 512 {
		return "", "", "", fleet.Errorf(fleet.CodeBadRequest, "module %q: give the module path of a service the fleet runs", module)
	}
	if !revisionRe.MatchString(rev) {
		return "", "", "", fleet.Errorf(fleet.CodeBadRequest, "rev %q is not a full commit hash. Pick a revision the fleet runs", rev)
	}
	return module, rev, path, nil
}

func (s *Server) getTree(w http.ResponseWriter, r *http.Request) {
	module, rev, _, err := sourceQuery(r)
	if err != nil {
		writeFleetError(w, err)
		return
	}
	t, err := s.opts.Sources.Tree(r.Context(), module, rev)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{fleet.Error{Code: "no_source", Message: err.Error()}})
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) {
	module, rev, path, err := sourceQuery(r)
	if err != nil {
		writeFleetError(w, err)
		return
	}
	b, err := s.opts.Sources.File(r.Context(), module, rev, path)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{fleet.Error{Code: "no_source", Message: err.Error()}})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b)
}

// FetchRequest is the body of POST /api/fetch.
type FetchRequest struct {
	Module string `json:"module"`
}

func (s *Server) postFetch(w http.ResponseWriter, r *http.Request) {
	var q FetchRequest
	if err := decode(r, &q); err != nil {
		writeFleetError(w, err)
		return
	}
	if q.Module == "" {
		writeError(w, http.StatusBadRequest, fleet.CodeBadRequest, "no module: say which service's repository to fetch")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	err := s.opts.Sources.Fetch(ctx, q.Module)
	s.hub.refreshFleet()
	if err != nil {
		writeJSON(w, http.StatusBadGateway, apiError{fleet.Error{Code: "fetch_failed", Message: err.Error()}})
		return
	}
	writeJSON(w, http.StatusOK, s.opts.Sources.State(q.Module))
}
