package fleet

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"math/bits"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
)

// Version is the version of the messages this package writes, but for
// those at HitVersion. Receivers refuse other versions with
// CodeBadVersion, saying which side to upgrade.
const Version = 1

// HitVersion is the version of hits, watermarks and heartbeats. Version 2
// moved hits and watermarks to subjects that name their tracepoint
// (Subjects.Trace) and gave the heartbeat its Digest: an agent of version
// 1 publishes where filtered readers do not look, so each side refuses the
// other's hits and heartbeats and says whom to upgrade, rather than a
// client waiting for hits that go elsewhere. Specs, statuses and the
// requests did not change.
const HitVersion = 2

// BatchVersion is the version of a HitBatch, several hits of one
// tracepoint in one message. A reader of version 2 decodes it as a hit of
// version 3 and refuses it with CodeBadVersion, "upgrade the older of the
// two", instead of misreading it; a lone hit stays at HitVersion, so such
// a reader still reads an agent that is not behind.
const BatchVersion = 3

// PackedBatchVersion is the version of a PackedHitBatch, a HitBatch
// compressed. A reader of BatchVersion decodes it as a hit of version 4
// and refuses it with CodeBadVersion, "upgrade the older of the two", as
// a reader of version 2 refuses a HitBatch; lone hits and the HitBatch an
// agent sends when compressing does not pay stay as they were.
const PackedBatchVersion = 4

func (h *Hit) stamp()       { h.V = HitVersion }
func (w *Watermark) stamp() { w.V = HitVersion }
func (h *Heartbeat) stamp() { h.V = HitVersion }

func (*Hit) wireVersion() int       { return HitVersion }
func (*Watermark) wireVersion() int { return HitVersion }
func (*Heartbeat) wireVersion() int { return HitVersion }

// versionOf is the version a message of v's type must have.
func versionOf(v any) int {
	if w, ok := v.(interface{ wireVersion() int }); ok {
		return w.wireVersion()
	}
	return Version
}

// Error codes carried by Error. They are stable: clients may switch on them.
const (
	CodeBadRequest   = "bad_request"   // malformed JSON, unknown field, missing field
	CodeBadVersion   = "bad_version"   // a message version this receiver does not speak
	CodeNoProcess    = "no_process"    // the pid does not exist on that host
	CodeNotGo        = "not_go"        // the process is not a Go program
	CodeNotManaged   = "not_managed"   // the agent's --processes selector excludes the process
	CodeAttach       = "attach_failed" // ptrace or the debugger refused
	CodeNoFile       = "no_file"       // no source file of the program matches the location
	CodeNoCode       = "no_code"       // the file is known but the line has no code
	CodeLineChanged  = "line_changed"  // the line was changed or does not exist in the process's revision
	CodeNoRevision   = "no_revision"   // the executable carries no vcs.revision and no committed version of the file matches it
	CodeBadCondition = "bad_condition" // condition, hit condition or log message does not parse; or a condition reads a value optimized away
	CodeInternal     = "internal"      // a bug: the message says what was being done
	CodeStopBudget   = "stop_budget"   // its traps alone cost more stop time than the agent's budget
	CodeTooLarge     = "too_large"     // the spec asks for more than the bounds allow (MaxStackDepth and the others)
	CodeQuarantined  = "quarantined"   // handling it crashed a worker or panicked the agent: it is no longer tried on that host
	CodeExpired      = "expired"       // its limits.expiresAt passed: the end its owner gave, or its owner stopped renewing it
	CodeRedacted     = "redacted"      // a condition, expression or log message reads a name the host redacts
	CodeUnsafeExpr   = "unsafe_expr"   // a condition, expression or log message reads raw memory (uintptr, unsafe) or registers
)

// Error is the error part of every reply and status. Message says what went
// wrong and what to do next.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError converts err into an *Error, keeping its code if it has one.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// Location names a source line independently of where the program was
// built: a module path plus the path inside the module, or (without a module)
// a path suffix that must match one file of the program on whole path
// elements.
//
// Line is the line in the client's checkout. When the fleet runs other
// revisions, the client maps the line into each of them (see
// docs/DESIGN.md, "Source mapping") and says so in Lines, Paths and
// Refused, keyed by the revision as processes report it (vcs.revision; a
// key may be a prefix of at least 7 characters). Agents pick the line with
// [Location.For]. All three are optional: a location without them is
// traced at Line everywhere.
type Location struct {
	Module string `json:"module,omitempty"`
	Path   string `json:"path"`
	Line   int    `json:"line"`
	// Revision is the commit Line refers to: the checkout's HEAD when the
	// file has no uncommitted edits, otherwise empty.
	Revision string `json:"revision,omitempty"`
	// Lines is the line in each revision the line was mapped into.
	Lines map[string]int `json:"lines,omitempty"`
	// Paths is the path inside the module in revisions where the file had
	// another name (it was renamed since).
	Paths map[string]string `json:"paths,omitempty"`
	// Refused says, per revision, why the line is not traced there: it was
	// changed or does not exist in that revision, or the revision could not
	// be read.
	Refused map[string]string `json:"refused,omitempty"`
	// Builds says, by Go build ID (Process.Build), which revision an
	// executable without vcs.revision was found to be built from; Lines,
	// Paths and Refused then apply to its processes as to those of that
	// revision. See [Location.ForProcess].
	Builds map[string]BuildRevision `json:"builds,omitempty"`
}

// BuildRevision is what a client found of an executable that carries no
// vcs.revision: the revision it was built from, or why none was found and
// the line is not traced there.
type BuildRevision struct {
	Revision string `json:"revision,omitempty"`
	// How says how the revision was found: "override" (the user named
	// it), "stamp NAME" (a -ldflags -X string variable), or "fingerprint"
	// (the DWARF of the traced file matched a committed version of it).
	How string `json:"how,omitempty"`
	// Note, when not empty, is a caveat traced with the line, such as
	// several committed versions matching the fingerprint.
	Note string `json:"note,omitempty"`
	// Refused, when not empty, says why no revision was found: the line
	// is not traced in the executable's processes.
	Refused string `json:"refused,omitempty"`
}

// minRevisionPrefix is the shortest revision key matched as a prefix.
const minRevisionPrefix = 7

// lookupRevision finds the key of m that names rev: the same string, or one a
// prefix of the other of at least minRevisionPrefix characters.
func lookupRevision[V any](m map[string]V, rev string) (V, bool) {
	if v, ok := m[rev]; ok {
		return v, true
	}
	var zero V
	if len(rev) < minRevisionPrefix {
		return zero, false
	}
	for k, v := range m {
		if len(k) >= minRevisionPrefix && (strings.HasPrefix(rev, k) || strings.HasPrefix(k, rev)) {
			return v, true
		}
	}
	return zero, false
}

// For returns the location to trace in a process built from revision rev
// (its vcs.revision, "" if it has none) with vcs.modified = modified: a copy
// with Path and Line set for that revision and Lines, Paths and Refused
// cleared. warning, when not empty, says why the line may not be the one
// the user meant; the location is traced anyway. A revision listed in
// Refused returns an error with code CodeLineChanged naming the revision and
// the reason, and the line is not traced there.
func (l Location) For(rev string, modified bool) (loc Location, warning string, err *Error) {
	loc = Location{Module: l.Module, Path: l.Path, Line: l.Line, Revision: l.Revision}
	mapped := l.Revision != "" || len(l.Lines) > 0 || len(l.Refused) > 0
	switch {
	case !mapped:
		return loc, "", nil
	case modified:
		return loc, fmt.Sprintf("the process was built from a tree with uncommitted changes (vcs.modified=true%s): traced at %s:%d as is, which may not be the line you meant", revisionNote(rev), loc.Path, loc.Line), nil
	case rev == "":
		return loc, fmt.Sprintf("the process carries no vcs.revision, and its revision was not found when the line was set: traced at %s:%d as in %s, which may not be the line you meant. Set the line again to find it, or name it with --revision", loc.Path, loc.Line, l.describe()), nil
	}
	if reason, ok := lookupRevision(l.Refused, rev); ok {
		return loc, "", Errorf(CodeLineChanged, "not traced in revision %s: %s (pick a line that revision has too, or deploy the checkout's revision)", ShortRevision(rev), reason)
	}
	if line, ok := lookupRevision(l.Lines, rev); ok {
		loc.Line, loc.Revision = line, rev
		if p, ok := lookupRevision(l.Paths, rev); ok {
			loc.Path = p
		}
		return loc, "", nil
	}
	if l.Revision != "" {
		if _, ok := lookupRevision(map[string]bool{l.Revision: true}, rev); ok {
			return loc, "", nil
		}
	}
	return loc, fmt.Sprintf("the line was not mapped into revision %s, which this process runs: traced at %s:%d as in %s, which may not be the line you meant (set the breakpoint again to map it)", ShortRevision(rev), loc.Path, loc.Line, l.describe()), nil
}

// ForProcess is For for process p: an executable without vcs.revision whose
// build the client resolved (Builds) is traced as in the revision found, or
// refused with CodeNoRevision and the reason when none was found. Agents
// call it; For is the rule for a known revision.
func (l Location) ForProcess(p *Process) (loc Location, warning string, err *Error) {
	b, ok := l.Builds[p.Build]
	if p.Revision != "" || p.Build == "" || !ok {
		return l.For(p.Revision, p.Modified)
	}
	if b.Refused != "" {
		return Location{Module: l.Module, Path: l.Path, Line: l.Line, Revision: l.Revision}, "", Errorf(CodeNoRevision, "%s", b.Refused)
	}
	loc, warning, err = l.For(b.Revision, false)
	if err == nil && b.Note != "" {
		warning = strings.TrimPrefix(warning+"; "+b.Note, "; ")
	}
	return loc, warning, err
}

// BuildRevision returns the revision the client found for build, "" if
// none: a hit of such a process carries it, so that its line maps back to
// the checkout.
func (l Location) BuildRevision(build string) string {
	if build == "" {
		return ""
	}
	return l.Builds[build].Revision
}

// Maps reports whether the location names its line in revision rev: rev
// is its Revision, or has an entry in Lines or Refused. A process of a
// revision it does not map traces Line as the checkout has it (For's
// warning), which may be another line there.
func (l Location) Maps(rev string) bool {
	if _, ok := lookupRevision(l.Lines, rev); ok {
		return true
	}
	if _, ok := lookupRevision(l.Refused, rev); ok {
		return true
	}
	_, ok := lookupRevision(map[string]bool{l.Revision: true}, rev)
	return l.Revision != "" && ok
}

// describe names the version Line refers to, for messages.
func (l Location) describe() string {
	if l.Revision == "" {
		return "the client's checkout"
	}
	return "revision " + ShortRevision(l.Revision)
}

func revisionNote(rev string) string {
	if rev == "" {
		return ""
	}
	return ", revision " + ShortRevision(rev)
}

// ShortRevision abbreviates a commit hash the way git log --oneline does.
func ShortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// validate checks the per-revision fields.
func (l Location) validate(id string) error {
	for rev, line := range l.Lines {
		if rev == "" || line <= 0 {
			return Errorf(CodeBadRequest, "tracepoint %s: lines[%q] = %d: every entry needs a revision and a line from 1", id, rev, line)
		}
		if _, ok := l.Refused[rev]; ok {
			return Errorf(CodeBadRequest, "tracepoint %s: revision %s is both mapped and refused: keep one", id, rev)
		}
	}
	for rev, why := range l.Refused {
		if rev == "" || why == "" {
			return Errorf(CodeBadRequest, "tracepoint %s: refused[%q] = %q: every entry needs a revision and a reason", id, rev, why)
		}
	}
	for build, b := range l.Builds {
		if build == "" || (b.Revision == "") == (b.Refused == "") {
			return Errorf(CodeBadRequest, "tracepoint %s: builds[%q]: every entry needs a build ID and either a revision or a reason", id, build)
		}
	}
	for rev, p := range l.Paths {
		if rev == "" || p == "" {
			return Errorf(CodeBadRequest, "tracepoint %s: paths[%q] = %q: every entry needs a revision and a path", id, rev, p)
		}
	}
	return nil
}

func (l Location) String() string {
	p := l.Path
	if l.Module != "" {
		p = l.Module + "/" + l.Path
	}
	return fmt.Sprintf("%s:%d", p, l.Line)
}

// Selector chooses the processes a tracepoint applies to. Empty lists match
// everything. Processes globs match the module path, the main package path or
// the executable's base name.
type Selector struct {
	Hosts     []string `json:"hosts,omitempty"`
	Processes []string `json:"processes,omitempty"`
	Pids      []int    `json:"pids,omitempty"`
}

// Capture says what a hit carries and how much of each value is loaded.
type Capture struct {
	Args        bool     `json:"args"`
	Locals      bool     `json:"locals"`
	Exprs       []string `json:"exprs,omitempty"`
	StackDepth  int      `json:"stackDepth,omitempty"`
	MaxString   int      `json:"maxStringLen,omitempty"`
	MaxArray    int      `json:"maxArrayValues,omitempty"`
	MaxDepth    int      `json:"maxStructDepth,omitempty"`
	MaxVariable int      `json:"maxVariables,omitempty"`
}

// DefaultCapture is what a tracepoint captures when its spec says nothing.
var DefaultCapture = Capture{Args: true, Locals: true, StackDepth: 8, MaxString: 64, MaxArray: 8, MaxDepth: 2, MaxVariable: 32}

// Limits bound what a tracepoint may cost.
type Limits struct {
	MaxHitsPerSecond int       `json:"maxHitsPerSecond,omitempty"`
	MaxHits          int       `json:"maxHits,omitempty"`
	ExpiresAt        time.Time `json:"expiresAt,omitzero"`
}

// DefaultMaxHitsPerSecond applies when a spec sets no rate.
const DefaultMaxHitsPerSecond = 50

// Spec declares one tracepoint across the fleet.
type Spec struct {
	Header
	ID           string    `json:"id"`
	Location     Location  `json:"location"`
	Selector     Selector  `json:"selector"`
	Condition    string    `json:"condition,omitempty"`
	HitCondition string    `json:"hitCondition,omitempty"`
	LogMessage   string    `json:"logMessage,omitempty"`
	Capture      Capture   `json:"capture"`
	Limits       Limits    `json:"limits"`
	Owner        string    `json:"owner,omitempty"`
	Created      time.Time `json:"created,omitzero"`
	// Backend, if set, picks the agent backend: auto, ebpf or delve.
	Backend string `json:"backend,omitempty"`
}

// Expired reports whether the spec's expiry has passed at now.
func (s *Spec) Expired(now time.Time) bool {
	return !s.Limits.ExpiresAt.IsZero() && !now.Before(s.Limits.ExpiresAt)
}

// Validate checks what can be checked without a program: the id, the
// location, the globs, the bounds (see MaxStackDepth and the others),
// that the condition and log message parse, and that no expression makes a
// raw read of memory or registers (see CheckExpr). Declaring clients call
// ValidateAt, which also refuses a spec already expired.
func (s *Spec) Validate() error {
	if err := s.checkBounds(); err != nil {
		return err
	}
	switch {
	case s.ID == "" || Token(s.ID) != s.ID:
		return Errorf(CodeBadRequest, "tracepoint id %q must be non-empty and use only letters, digits, '-' and '_'", s.ID)
	case s.Location.Path == "":
		return Errorf(CodeBadRequest, "tracepoint %s has no file: give a path such as internal/pay/charge.go", s.ID)
	case s.Location.Line <= 0:
		return Errorf(CodeBadRequest, "tracepoint %s: line %d is not a line number (lines start at 1)", s.ID, s.Location.Line)
	}
	if err := s.Location.validate(s.ID); err != nil {
		return err
	}
	if err := s.validateLimits(); err != nil {
		return err
	}
	if err := validateHitCondition(s.HitCondition); err != nil {
		return err
	}
	switch s.Backend {
	case "", "auto", "ebpf", "delve":
	default:
		return Errorf(CodeBadRequest, "tracepoint %s: unknown backend %q: use auto, ebpf or delve", s.ID, s.Backend)
	}
	if s.Condition != "" {
		if _, err := parser.ParseExpr(s.Condition); err != nil {
			return Errorf(CodeBadCondition, "condition %q is not a Go expression: %v", s.Condition, err)
		}
	}
	for _, e := range s.Capture.Exprs {
		if _, err := parser.ParseExpr(e); err != nil {
			return Errorf(CodeBadCondition, "capture expression %q is not a Go expression: %v", e, err)
		}
	}
	if _, err := ParseLogMessage(s.LogMessage); err != nil {
		return err
	}
	// Raw reads are refused whatever the host redacts; the redacted
	// names are the agent's to check.
	return s.CheckReads(nil)
}

// validateLimits refuses negative limits, which backends would read as
// "none" or worse; checkBounds has checked the capture's.
func (s *Spec) validateLimits() error {
	for _, l := range []struct {
		name string
		v    int
	}{
		{"limits.maxHitsPerSecond", s.Limits.MaxHitsPerSecond},
		{"limits.maxHits", s.Limits.MaxHits},
	} {
		if l.v < 0 {
			return Errorf(CodeBadRequest, "tracepoint %s: %s is %d: give 0 or more (0 or leaving it out takes the default)", s.ID, l.name, l.v)
		}
	}
	return nil
}

// hitConditionRe is the hit condition syntax Delve reads as written: an
// optional operator, at most one space, a number. Delve finds its pattern
// anywhere in the string, so anything looser would be read as something
// else (">  5" as "== 5").
var hitConditionRe = regexp.MustCompile(`^(==|!=|<=|>=|<|>|%)? ?([0-9]+)$`)

// validateHitCondition checks a Delve hit condition: "5", ">= 10", "% 2".
func validateHitCondition(hc string) error {
	if hc == "" {
		return nil
	}
	m := hitConditionRe.FindStringSubmatch(strings.TrimSpace(hc))
	if m == nil {
		return Errorf(CodeBadCondition, "hit condition %q: write a number of hits (5), or an operator and a number (>= 10, %% 2); the operators are == != < <= > >= %%", hc)
	}
	n, err := strconv.Atoi(m[2])
	if err != nil {
		return Errorf(CodeBadCondition, "hit condition %q: %s is too large a number of hits", hc, m[2])
	}
	if m[1] == "%" && n == 0 {
		return Errorf(CodeBadCondition, "hit condition %q: %% 0 divides by zero: write %% N with N >= 1 (every Nth hit)", hc)
	}
	return nil
}

// LogSegment is one piece of a parsed log message: literal text or an
// expression to interpolate.
type LogSegment struct {
	Text string
	Expr string
}

// ParseLogMessage splits a DAP-style log message ("total={total}") into
// literal text and expressions. "{{" and "}}" stand for literal braces.
func ParseLogMessage(msg string) ([]LogSegment, error) {
	var segs []LogSegment
	var text strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		switch {
		case c == '{' && i+1 < len(msg) && msg[i+1] == '{', c == '}' && i+1 < len(msg) && msg[i+1] == '}':
			text.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(msg[i:], '}')
			if end < 0 {
				return nil, Errorf(CodeBadCondition, "log message %q: '{' at offset %d is never closed; write {{ for a literal brace", msg, i)
			}
			expr := strings.TrimSpace(msg[i+1 : i+end])
			if _, err := parser.ParseExpr(expr); err != nil {
				return nil, Errorf(CodeBadCondition, "log message %q: {%s} is not a Go expression: %v", msg, expr, err)
			}
			if text.Len() > 0 {
				segs = append(segs, LogSegment{Text: text.String()})
				text.Reset()
			}
			segs = append(segs, LogSegment{Expr: expr})
			i += end
		case c == '}':
			return nil, Errorf(CodeBadCondition, "log message %q: '}' at offset %d has no '{'; write }} for a literal brace", msg, i)
		default:
			text.WriteByte(c)
		}
	}
	if text.Len() > 0 {
		segs = append(segs, LogSegment{Text: text.String()})
	}
	return segs, nil
}

// Variable is a captured value as a bounded tree. Value is a one-line
// rendering; Unreadable, when set, says why the value could not be read.
type Variable struct {
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	Value      string     `json:"value"`
	Children   []Variable `json:"children,omitempty"`
	Unreadable string     `json:"unreadable,omitempty"`
}

// Shown is the value as every client writes it on one line: the value, or
// for one that was not read, its short mark such as "<not captured:
// float64>" or "<optimized away>". Unreadable, the long reason, is for
// whoever shows details (a hover, a note in the debug console), so that
// the console, lenses, hovers and hints all word a missing value alike.
func (v *Variable) Shown() string {
	if v.Value == "" && v.Unreadable != "" {
		// Agents set Value; a hit of one that did not says the reason,
		// if it is short enough to be a mark.
		if len(v.Unreadable) <= 24 && !strings.ContainsAny(v.Unreadable, ";:(") {
			return "<" + v.Unreadable + ">"
		}
		return "<not captured>"
	}
	return v.Value
}

// Frame is one stack frame of a hit.
type Frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	PC       uint64 `json:"pc"`
}

// ProcessRef identifies the process a hit came from.
type ProcessRef struct {
	Exe         string `json:"exe"`
	Module      string `json:"module,omitempty"`
	MainPackage string `json:"mainPackage,omitempty"`
	Revision    string `json:"revision,omitempty"`
	Modified    bool   `json:"modified,omitempty"` // vcs.modified: built from a tree with uncommitted changes
	// Build is the Go build ID of an executable without vcs.revision. A
	// hit of one carries in Revision the revision the client found it
	// runs (Location.Builds), if any.
	Build string `json:"build,omitempty"`
}

// Hit is one execution of a traced line. Agents fill everything up to
// Dropped; consumers add Seq and ServerTime from the hit stream.
type Hit struct {
	Header
	Tracepoint string     `json:"tracepoint"`
	Host       string     `json:"host"`
	Pid        int        `json:"pid"`
	Process    ProcessRef `json:"process"`
	Goroutine  int64      `json:"goroutine"`
	Time       int64      `json:"time"` // unix ns, taken on the agent's clock at capture
	// Clock is the agent's clock against the server's when it published
	// the hit; nil when no clock server answered (the hit's place in the
	// timeline is then uncertain).
	Clock    *ClockReading `json:"clock,omitempty"`
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Function string        `json:"function"`
	Args     []Variable    `json:"args"`
	Locals   []Variable    `json:"locals"`
	Exprs    []Variable    `json:"exprs,omitempty"`
	Stack    []Frame       `json:"stack"`
	Message  string        `json:"message,omitempty"`
	Dropped  uint64        `json:"dropped,omitempty"`
	Errors   []string      `json:"errors,omitempty"`
	// Trace is the W3C trace context (OpenTelemetry's span context) of a
	// context.Context the hit captured, nil if none carried one.
	Trace *TraceContext `json:"trace,omitempty"`

	Seq uint64 `json:"seq,omitempty"`
	// Part is the hit's place in its message of the stream, from 0: the
	// hits of a HitBatch share its Seq. Seq and Part name a hit.
	Part       int       `json:"part,omitempty"`
	ServerTime time.Time `json:"serverTime,omitzero"`
}

// Number is how a hit is named to people: its stream sequence, and its
// part after a dot when it came in a batch ("17", "17.3"). Seq and Part
// name a hit; the hits of a batch share its Seq.
func (h *Hit) Number() string { return HitNumber(h.Seq, h.Part) }

// HitNumber names the hit of stream sequence seq and part as Hit.Number
// does, for a hit known only by those, such as Placed.UncertainWith.
func HitNumber(seq uint64, part int) string {
	if part > 0 {
		return strconv.FormatUint(seq, 10) + "." + strconv.Itoa(part)
	}
	return strconv.FormatUint(seq, 10)
}

// HitBatch is several hits of one host's tracepoint in one message of the
// hit stream, in the order the agent captured them. An agent with a
// backlog sends its hits so: each message costs the cluster far more than
// its bytes (its store, its replication, its ack), so a message of many
// hits stores many more a second. Readers never see a HitBatch: DecodeHits
// turns it into its hits.
type HitBatch struct {
	Header
	Hits []json.RawMessage `json:"hits"`
}

func (b *HitBatch) stamp()         { b.V = BatchVersion }
func (*HitBatch) wireVersion() int { return BatchVersion }

// HitsHeader is the header of a HitBatch's message that says how many
// hits it holds, so that they can be counted without reading the bodies
// (Client.StoredHits).
const HitsHeader = "Riptrace-Hits"

// batchHead starts every HitBatch Encode writes: a hit, whose first field
// is its version too, never starts so.
var batchHead = []byte(`{"v":3,"hits":[`)

// EncodeHitBatch makes one HitBatch of hits encoded by Encode, without
// decoding them again: the agent keeps its hits encoded.
func EncodeHitBatch(hits [][]byte) []byte {
	return appendHitBatch(make([]byte, 0, hitBatchSize(hits)), hits)
}

// hitBatchSize is the size of the HitBatch of hits.
func hitBatchSize(hits [][]byte) int {
	n := len(batchHead) + 2
	for _, h := range hits {
		n += len(h) + 1
	}
	return n
}

// appendHitBatch appends the HitBatch of hits to b.
func appendHitBatch(b []byte, hits [][]byte) []byte {
	b = append(b, batchHead...)
	for i, h := range hits {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, h...)
	}
	return append(b, ']', '}')
}

// PackedHitBatch is a HitBatch, as EncodeHitBatch writes it, compressed
// with S2 (klauspost/compress/s2, Snappy's faster successor) in its block
// format. The hits of a batch share their tracepoint, process, function,
// stack and the names and types of their variables, so a batch of 40
// realistic hits packs to a tenth of its size or less. Each byte of a
// message costs the cluster many times over (received, written and hashed
// by each replica, delivered to each reader), and the servers' CPU per
// hit was most of a hit's cost: packed, a batch costs them a fraction.
//
// It stays a JSON object so that a reader of an earlier version reads its
// "v" and says which side to upgrade (see PackedBatchVersion) instead of
// calling it malformed; the block is in base64, as encoding/json writes a
// []byte.
type PackedHitBatch struct {
	Header
	S2 []byte `json:"s2"`
}

func (b *PackedHitBatch) stamp()         { b.V = PackedBatchVersion }
func (*PackedHitBatch) wireVersion() int { return PackedBatchVersion }

// packedHead and packedTail frame every PackedHitBatch PackHitBatch
// writes, its block's base64 between them.
var (
	packedHead = []byte(`{"v":4,"s2":"`)
	packedTail = []byte(`"}`)
)

// MaxUnpackedBatch is the most bytes a PackedHitBatch may unpack to:
// half of NATS's largest max_payload, the most an Outbox batches. A
// message claiming more is refused before it is unpacked.
const MaxUnpackedBatch = 32 << 20

// packBufs are PackHitBatch's buffers for the batch before and after
// compression.
var packBufs = sync.Pool{New: func() any { return new(packBuf) }}

type packBuf struct{ raw, packed []byte }

// PackHitBatch makes one message of hits encoded by Encode: a
// PackedHitBatch of them, or their HitBatch (EncodeHitBatch) when packing
// would not make it smaller. Readers read either through DecodeHits.
func PackHitBatch(hits [][]byte) []byte {
	return packHitBatch(hits, func(n int) []byte { return make([]byte, 0, n) })
}

// packHitBatch is PackHitBatch into a buffer alloc makes with room for n
// bytes.
func packHitBatch(hits [][]byte, alloc func(n int) []byte) []byte {
	buf := packBufs.Get().(*packBuf)
	defer func() {
		if cap(buf.raw) <= 1<<20 {
			packBufs.Put(buf)
		}
	}()
	// Made at the next power of two of the size needed: grown as it
	// filled, a batch of 500 kB copied 500 kB more; made to size, each
	// batch larger than the last made both again (16 MB for 75k hits of
	// make bench's hot loop in batches of about 175).
	if n := hitBatchSize(hits); cap(buf.raw) < n {
		buf.raw = make([]byte, 0, pow2(n))
	}
	buf.raw = appendHitBatch(buf.raw[:0], hits)
	if n := s2.MaxEncodedLen(len(buf.raw)); cap(buf.packed) < n {
		buf.packed = make([]byte, pow2(n))
	}
	packed := s2.Encode(buf.packed[:cap(buf.packed)], buf.raw)
	n := len(packedHead) + base64.StdEncoding.EncodedLen(len(packed)) + len(packedTail)
	if n >= len(buf.raw) {
		return append(alloc(len(buf.raw)), buf.raw...)
	}
	b := alloc(n)[:n]
	i := copy(b, packedHead)
	base64.StdEncoding.Encode(b[i:], packed)
	copy(b[n-len(packedTail):], packedTail)
	return b
}

// pow2 is the least power of two not under n.
func pow2(n int) int { return 1 << bits.Len(uint(n-1)) }

// unpackHitBatch returns the HitBatch data, a PackedHitBatch, carries.
func unpackHitBatch(data []byte) ([]byte, error) {
	var block []byte
	rest, ok := bytes.CutPrefix(data, packedHead)
	if ok && bytes.HasSuffix(rest, packedTail) {
		// As PackHitBatch writes it: base64 holds no quote to end the
		// string early, and a stray one fails its decoding.
		b64 := rest[:len(rest)-len(packedTail)]
		block = make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
		n, err := base64.StdEncoding.Decode(block, b64)
		ok = err == nil
		block = block[:n]
	}
	if !ok {
		var p PackedHitBatch
		if err := Decode(data, "packed hit batch", &p); err != nil {
			return nil, err
		}
		block = p.S2
	}
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, Errorf(CodeBadRequest, "malformed packed hit batch: its S2 block: %v", err)
	}
	if n > MaxUnpackedBatch {
		return nil, Errorf(CodeTooLarge, "packed hit batch unpacks to %d bytes, more than the %d a batch may hold: send fewer hits to a batch", n, MaxUnpackedBatch)
	}
	raw, err := s2.Decode(make([]byte, n), block)
	if err != nil {
		return nil, Errorf(CodeBadRequest, "malformed packed hit batch: its S2 block: %v", err)
	}
	return raw, nil
}

// DecodeHits decodes one message of the hit stream: a hit, a HitBatch, or
// a PackedHitBatch, into its hits, each decoded as Decode decodes a lone
// hit, with its errors, but without reflection (decodeHit). It appends
// them to dst. Every reader of the stream decodes through it, so a batch
// is read as its hits wherever hits are read.
func DecodeHits(data []byte, dst []Hit) ([]Hit, error) {
	// A good message is read without reflection (see decodeHit); anything
	// else, by Decode, whose errors name what is wrong.
	if bytes.HasPrefix(data, packedHead) {
		return decodePackedHitBatch(data, dst)
	}
	if bytes.HasPrefix(data, batchHead) {
		return decodeHitBatch(data, dst)
	}
	var h Hit
	if decodeHit(data, &h) && h.V == HitVersion {
		return append(dst, h), nil
	}
	if peekVersion(data) == PackedBatchVersion {
		// Packed, but written otherwise than by PackHitBatch.
		return decodePackedHitBatch(data, dst)
	}
	h = Hit{}
	err := Decode(data, "hit", &h)
	if err == nil {
		h.Part = 0
		return append(dst, h), nil
	}
	if e := AsError(err); e.Code != CodeBadVersion || !strings.Contains(e.Message, "version 3,") {
		return dst, err
	}
	// A batch written otherwise than by Encode: its own errors say
	// more.
	return decodeHitBatch(data, dst)
}

// decodePackedHitBatch appends the hits of data, a PackedHitBatch, to dst.
func decodePackedHitBatch(data []byte, dst []Hit) ([]Hit, error) {
	raw, err := unpackHitBatch(data)
	if err != nil {
		return dst, err
	}
	if !bytes.HasPrefix(raw, batchHead) && peekVersion(raw) != BatchVersion {
		return dst, Errorf(CodeBadRequest, "packed hit batch holds no hit batch: pack a HitBatch of version %d", BatchVersion)
	}
	hits, err := decodeHitBatch(raw, dst)
	if err != nil {
		return dst, Errorf(AsError(err).Code, "in a packed hit batch: %v", err)
	}
	return hits, nil
}

// peekVersion is the "v" of data, a JSON object, or -1 if it has none.
// Only messages DecodeHits cannot read fast pay for it.
func peekVersion(data []byte) int {
	var head struct {
		V *int `json:"v"`
	}
	if json.Unmarshal(data, &head) != nil || head.V == nil {
		return -1
	}
	return *head.V
}

// decodeHitBatch appends the hits of data, a HitBatch, to dst.
func decodeHitBatch(data []byte, dst []Hit) ([]Hit, error) {
	n := len(dst)
	if bytes.HasPrefix(data, batchHead) {
		if hits, ok := decodeBatch(data, dst); ok {
			return hits, nil
		}
		// What the failed reading left in dst's spare room is not to be
		// kept alive by it.
		clear(dst[n:cap(dst)])
	}
	var b HitBatch
	if err := Decode(data, "hit batch", &b); err != nil {
		return dst, err
	}
	if len(b.Hits) == 0 {
		return dst, Errorf(CodeBadRequest, "hit batch holds no hit: send at least one")
	}
	for i, raw := range b.Hits {
		var h Hit
		if err := Decode(raw, "hit", &h); err != nil {
			return dst, Errorf(AsError(err).Code, "hit %d of %d in a batch: %v", i+1, len(b.Hits), err)
		}
		h.Part = i
		dst = append(dst, h)
	}
	return dst, nil
}

// TraceContext is the W3C trace context of a request, as OpenTelemetry
// keeps it in a context.Context: the trace the request belongs to, and the
// span it ran in. Remote says the span is the caller's, received with the
// request (a traceparent header), not one this process started; Parent,
// when known, is the span this one was started under.
type TraceContext struct {
	TraceID string `json:"traceId"` // 32 lowercase hex digits
	SpanID  string `json:"spanId"`  // 16 lowercase hex digits
	Parent  string `json:"parent,omitempty"`
	Remote  bool   `json:"remote,omitempty"`
}

// Watermark is an agent's promise about its hits, published into the hit
// stream among them (see Timeline): every hit it captured before Time (on
// its clock) is in the stream before this message, and every hit it
// publishes after it reaches the stream within Lag of its capture. Final
// says the agent stops: it publishes nothing more.
type Watermark struct {
	Header
	Host  string        `json:"host"`
	Time  int64         `json:"time"` // unix ns, on the agent's clock
	Lag   Duration      `json:"lag"`
	Clock *ClockReading `json:"clock,omitempty"`
	Final bool          `json:"final,omitempty"`

	Seq        uint64    `json:"seq,omitempty"`
	ServerTime time.Time `json:"serverTime,omitzero"`
}

// HostInfo are the facts of one agent's host.
type HostInfo struct {
	Name         string    `json:"name"`
	OS           string    `json:"os"`
	Arch         string    `json:"arch"`
	Kernel       string    `json:"kernel"`
	CPUs         int       `json:"cpus"`
	AgentVersion string    `json:"agentVersion"`
	Backends     []string  `json:"backends"`
	Started      time.Time `json:"started"`
	// Clock is the agent's clock against the server's, nil when no
	// clock server answers (ClockError says why).
	Clock      *ClockReading `json:"clock,omitempty"`
	ClockError string        `json:"clockError,omitempty"`
}

// Process is one Go process an agent can attach to.
type Process struct {
	Pid         int      `json:"pid"`
	Exe         string   `json:"exe"`
	Cmdline     []string `json:"cmdline"`
	Module      string   `json:"module"`
	MainPackage string   `json:"mainPackage"`
	GoVersion   string   `json:"goVersion"`
	Revision    string   `json:"revision,omitempty"`
	Modified    bool     `json:"modified,omitempty"`
	VCSTime     string   `json:"vcsTime,omitempty"`
	ContainerID string   `json:"containerId,omitempty"`
	Attached    bool     `json:"attached"`
	Tracepoints []string `json:"tracepoints,omitempty"`
	// Files are the source files the executable's DWARF names, sorted;
	// only when the profile request asked for them.
	Files []string `json:"files,omitempty"`
	// Build is the executable's Go build ID, for an executable without
	// Revision: clients name what they found of it by this
	// (Location.Builds), since replicas on every host share it.
	Build string `json:"build,omitempty"`
	// Stamps are the string variables of an executable without Revision
	// set at link time by -ldflags -X whose names say they hold a version
	// or a commit (main.commit, …/version.Revision), by symbol name; at
	// most MaxStamps, each value at most MaxStampLen bytes.
	Stamps map[string]string `json:"stamps,omitempty"`
	// Fingerprint is what the executable's DWARF says of the file the
	// profile request named (Request.Fingerprint), for an executable
	// without Revision; only on the first process of each build.
	Fingerprint *Fingerprint `json:"fingerprint,omitempty"`
}

// Fingerprint is what an executable's DWARF says of one source file: the
// lines its functions are declared on and the lines that have code. A
// client matches it against the file's committed versions to find the
// revision an executable without vcs.revision was built from.
type Fingerprint struct {
	// File is the file as the DWARF names it.
	File string `json:"file"`
	// Funcs are the functions declared in the file, with their line
	// (DW_AT_decl_line), sorted by line then name.
	Funcs []FuncDecl `json:"funcs,omitempty"`
	// Lines are the lines of the file that have code in the line table,
	// sorted.
	Lines []int `json:"lines,omitempty"`
	// Truncated says the file had more than MaxFingerprintFuncs functions
	// or MaxFingerprintLines lines: what is here cannot be matched
	// exactly.
	Truncated bool `json:"truncated,omitempty"`
	// Error says why the file could not be read from the executable.
	Error string `json:"error,omitempty"`
}

// FuncDecl is one function of a Fingerprint: its name as the DWARF says
// (pkg.(*T).M, pkg.f.func1, pkg.g[go.shape.int]) and its declaration line.
type FuncDecl struct {
	Name string `json:"name"`
	Line int    `json:"line"`
}

// Bounds of what a profile carries of an executable without vcs.revision.
const (
	MaxStamps           = 8
	MaxStampLen         = 128
	MaxFingerprintFuncs = 4096
	MaxFingerprintLines = 32768
)

// Ref returns the identity a hit carries.
func (p *Process) Ref() ProcessRef {
	return ProcessRef{Exe: path.Base(p.Exe), Module: p.Module, MainPackage: p.MainPackage, Revision: p.Revision, Modified: p.Modified, Build: p.Build}
}

// Profile is the reply to profile.get.
type Profile struct {
	Header
	Host      HostInfo  `json:"host"`
	Processes []Process `json:"processes"`
	Error     *Error    `json:"error,omitempty"`
}

// Heartbeat is what an agent keeps in the host bucket.
type Heartbeat struct {
	Header
	Host    string    `json:"host"`
	Updated time.Time `json:"updated"`
	Every   Duration  `json:"every"`
	// Digest changes whenever the host's managed processes do (one comes
	// or goes, or runs another revision): a client that holds the host's
	// profile asks for it again only then (HostWatch).
	Digest string `json:"digest,omitempty"`
}

// ProcessDigest is the Digest of a heartbeat for these processes: a hash
// of what a client shows of each (pid, executable, module, main package,
// revision, attached or not), the same whatever their order.
func ProcessDigest(procs []*Process) string {
	lines := make([]string, len(procs))
	for i, p := range procs {
		lines[i] = fmt.Sprintf("%d\x00%s\x00%s\x00%s\x00%s\x00%t\x00%t", p.Pid, p.Exe, p.Module, p.MainPackage, p.Revision, p.Modified, p.Attached)
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:8])
}

// Request is the payload of profile.get (no fields but the version).
type Request struct {
	Header
	// Files asks for the source files each process's DWARF names; they
	// are left out otherwise (thousands per process).
	Files bool `json:"files,omitempty"`
	// Fingerprint names a file (module and path, as a tracepoint's
	// Location does): each executable without vcs.revision that has it
	// answers with its Fingerprint.
	Fingerprint *Location `json:"fingerprint,omitempty"`
}

// AttachRequest is the payload of debugger.attach.
type AttachRequest struct {
	Header
	Pid int `json:"pid"`
}

// AttachReply answers debugger.attach.
type AttachReply struct {
	Header
	Pid      int    `json:"pid"`
	Attached bool   `json:"attached"`
	Error    *Error `json:"error,omitempty"`
}

// CreateTracepointReply answers debugger.createTracepoint with one placement
// or failure per matching process.
type CreateTracepointReply struct {
	Header
	ID         string      `json:"id"`
	Placements []Placement `json:"placements"`
	Error      *Error      `json:"error,omitempty"`
}

// ClearTracepointRequest is the payload of debugger.clearTracepoint.
type ClearTracepointRequest struct {
	Header
	ID string `json:"id"`
}

// ClearTracepointReply answers debugger.clearTracepoint.
type ClearTracepointReply struct {
	Header
	ID    string `json:"id"`
	Error *Error `json:"error,omitempty"`
}

// Placement says where a tracepoint went in one process, or why not.
type Placement struct {
	Pid      int      `json:"pid"`
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
	Function string   `json:"function,omitempty"`
	PCs      []uint64 `json:"pcs,omitempty"`
	Error    *Error   `json:"error,omitempty"`
	Backend  string   `json:"backend,omitempty"` // which agent backend serves it: ebpf or delve
	// BackendWhy says why backend auto chose Delve where it prefers eBPF:
	// a value the spec needs is out of a uprobe's reach at the line.
	BackendWhy string `json:"backendWhy,omitempty"`
	// ProbeWhy says where in the line the eBPF backend put a probe when
	// not at the line's first instruction, and why: a value is readable
	// there that is not at the first.
	ProbeWhy string `json:"probeWhy,omitempty"`
}

// Status states.
const (
	StateInstalled = "installed"
	StatePending   = "pending"
	StateError     = "error"
	StateThrottled = "throttled"
	StateDone      = "done" // maxHits reached or the process exited
)

// Status is one agent's report on one tracepoint in one process (Pid 0: the
// host as a whole, for example when no process matches).
type Status struct {
	Header
	Tracepoint string     `json:"tracepoint"`
	Host       string     `json:"host"`
	Pid        int        `json:"pid"`
	Process    ProcessRef `json:"process"`
	State      string     `json:"state"`
	Message    string     `json:"message,omitempty"`
	Code       string     `json:"code,omitempty"` // the error's stable code (Code*), in StateError
	Placement  *Placement `json:"placement,omitempty"`
	Hits       uint64     `json:"hits"`
	Dropped    uint64     `json:"dropped,omitempty"` // hits the rate limit dropped or the agent lost (NATS unreachable, buffer full), in all
	// DroppedLowerBound says that Dropped counts only the drops seen one by
	// one: once a tracepoint's allowance is spent, its probes come out until
	// the next second, and the hits meanwhile go uncounted. DroppedEstimate
	// then adds to Dropped an estimate of those, from the rate the line ran
	// at with the probes in, less the time they held it (agent.Disarm):
	// within 2x for a line that runs steadily. DroppedUnestimated counts
	// the times the probes were out with no estimate of the hits meanwhile:
	// they held the line for more than half of the arming before (a hot
	// line: each hit a trap, a capture, a stop), so that its rate then said
	// nothing of its rate with them out; the host starved it; or the line
	// slowed or stopped while they were out (a burst that ended). Their
	// hits are in neither figure: DroppedEstimate, where there is one,
	// estimates the others only. With no estimate at all it is 0
	// (omitted), DroppedLowerBound set, and Dropped a lower bound only.
	DroppedLowerBound  bool      `json:"droppedLowerBound,omitempty"`
	DroppedEstimate    uint64    `json:"droppedEstimate,omitempty"`
	DroppedUnestimated uint64    `json:"droppedUnestimated,omitempty"`
	Updated            time.Time `json:"updated"`
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Header carries the version every message starts with. Embedded, it
// flattens into the message's JSON as "v".
type Header struct {
	V int `json:"v"`
}

func (h *Header) stamp() { h.V = Version }

func (h *Header) version() int { return h.V }

// Message is any of this package's messages.
type Message interface{ stamp() }

// ErrorReply is an error answer to any request; every reply type decodes it.
type ErrorReply struct {
	Header
	Error *Error `json:"error"`
}

// Encode marshals a message, stamping the current version into it so callers
// never forget it.
func Encode(v Message) []byte {
	switch m := v.(type) {
	case *Hit:
		return EncodeHit(m)
	case *Watermark:
		m.stamp()
		if b := m.appendJSON(make([]byte, 0, 128)); b != nil {
			return b
		}
	}
	v.stamp()
	return marshal(v)
}

// EncodeHit is Encode for a hit, which an agent encodes for each one it
// publishes. It writes the hit in a buffer used again and returns a copy
// of just its size: a fresh buffer of a guessed size was either too big,
// zeroed for nothing and kept until the stream took the hit, or too small
// and grown; on make bench's hot loop, a hit of 1.1 kB outgrew 1 kB and
// encoding it was a sixth of the agent's CPU per hit.
func EncodeHit(h *Hit) []byte {
	sc := encodeHitScratch(h)
	defer putEncodeBuf(sc)
	return bytes.Clone(sc.b)
}

// hitScratch is a buffer to encode hits in, with what the hits encoded in
// it before let the next skip (hitCache).
type hitScratch struct {
	b     []byte
	cache hitCache
}

// encodeHitScratch encodes h in sc.b of a hitScratch of encodeBufs, which
// the caller copies and gives back (putEncodeBuf).
func encodeHitScratch(h *Hit) *hitScratch {
	h.stamp()
	sc := encodeBufs.Get().(*hitScratch)
	if b := h.appendJSON(sc.b[:0], &sc.cache); b != nil {
		sc.b = b
		return sc
	}
	// A copy, so that h does not escape to the heap for the path taken
	// once in a long while.
	c := *h
	sc.b = marshal(&c)
	return sc
}

// encodeBufs are EncodeHit's buffers.
var encodeBufs = sync.Pool{New: func() any { return &hitScratch{b: make([]byte, 0, 4<<10)} }}

// putEncodeBuf gives sc back to encodeBufs, unless a hit made it large:
// the pool would keep it alive for the few hits that need it.
func putEncodeBuf(sc *hitScratch) {
	if cap(sc.b) <= 64<<10 {
		encodeBufs.Put(sc)
	}
}

func marshal(v Message) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Every message type marshals; this is a programming error.
		panic(fmt.Sprintf("encoding %T: %v", v, err))
	}
	return b
}

// Decode unmarshals data into v strictly: it must be one JSON object of the
// current version with no unknown fields. what names the message in errors
// ("tracepoint spec", "attach request").
func Decode(data []byte, what string, v any) error {
	version := versionOf(v)
	// The common case, a good message of this version, is parsed once; only
	// a failure pays for working out which error to report.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err == nil && onlySpace(data[dec.InputOffset():]) {
		if h, ok := v.(interface{ version() int }); ok && h.version() == version {
			return nil
		}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Errorf(CodeBadRequest, "empty %s: send a JSON object with \"v\": %d", what, version)
	}
	var head struct {
		V *int `json:"v"`
	}
	// Unmarshal also refuses trailing data after the object.
	if err := json.Unmarshal(data, &head); err != nil {
		return Errorf(CodeBadRequest, "malformed %s: %v (send a JSON object with \"v\": %d)", what, err, version)
	}
	if head.V == nil {
		return Errorf(CodeBadRequest, "%s has no version: add \"v\": %d", what, version)
	}
	if *head.V != version {
		return Errorf(CodeBadVersion, "%s has version %d, this side speaks version %d: upgrade the older of the two", what, *head.V, version)
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			// Fields are added within a version: a newer peer is the
			// likelier cause than a typo, and the one to name.
			return Errorf(CodeBadRequest, "malformed %s: %v: a typo, or a field of a newer riptrace than this side (wire version %d); fix the field, or upgrade this side", what, err, version)
		}
		return Errorf(CodeBadRequest, "malformed %s: %v", what, err)
	}
	return nil
}

func onlySpace(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }
