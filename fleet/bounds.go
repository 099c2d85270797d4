package fleet

import (
	"fmt"
	"strings"
	"time"
)

// Bounds on what one tracepoint may ask of an agent. A spec past any of them
// is refused with CodeTooLarge where it is declared (Spec.Validate, which
// fleet.Client, `riptrace trace`, the debug adapter and the language server
// all call) and again by every agent that reads it from the bucket, since a
// spec written there by hand never passed a client. Each bound is far above
// what a person reading hits needs, and far below what would cost an agent
// its memory: a stack depth of 1e9 once made Delve's stack walk allocate
// until the agent died, in a loop, as the spec stayed in the bucket.
const (
	MaxIDLen         = 128     // Spec.ID
	MaxOwnerLen      = 256     // Spec.Owner
	MaxPathLen       = 1024    // Location.Module, Location.Path and each Location.Paths entry
	MaxRevisions     = 256     // entries in each of Location.Lines, Location.Paths and Location.Refused
	MaxReasonLen     = 1024    // each Location.Refused reason
	MaxSelectorGlobs = 64      // Selector.Hosts, and Selector.Processes
	MaxGlobLen       = 256     // each glob of a selector
	MaxSelectorPids  = 1024    // Selector.Pids
	MaxExprLen       = 1024    // Condition and each capture expression, in bytes
	MaxExprs         = 16      // Capture.Exprs
	MaxLogMessageLen = 4096    // LogMessage, in bytes
	MaxLogExprs      = 16      // {expr} interpolations in LogMessage
	MaxStackDepth    = 100     // Capture.StackDepth
	MaxStringLen     = 16384   // Capture.MaxString
	MaxArrayValues   = 1024    // Capture.MaxArray
	MaxStructDepth   = 8       // Capture.MaxDepth
	MaxVariables     = 512     // Capture.MaxVariable
	MaxCaptureValues = 1 << 20 // Capture.MaxArray to the power Capture.MaxDepth: the values one variable may load
	MaxSpecBytes     = 64 << 10
)

// tooLarge says which bound a spec passed and what to write instead.
func tooLarge(id, field string, got, limit int, instead string) *Error {
	return Errorf(CodeTooLarge, "tracepoint %s: %s is %d, more than the %d an agent allows. %s", id, field, got, limit, instead)
}

// checkBounds refuses a spec past any bound, before anything in it is parsed:
// a megabyte of condition is refused, not parsed.
func (s *Spec) checkBounds() error {
	id := s.ID
	if len(id) > MaxIDLen {
		return tooLarge(id[:16]+"…", "the id's length", len(id), MaxIDLen, "Give a shorter id.")
	}
	for _, f := range []struct {
		name    string
		got     int
		limit   int
		instead string
	}{
		{"owner's length", len(s.Owner), MaxOwnerLen, "Name the owner in fewer bytes."},
		{"location.module's length", len(s.Location.Module), MaxPathLen, "Give the module path as go.mod writes it."},
		{"location.path's length", len(s.Location.Path), MaxPathLen, "Give the path inside the module, or a shorter suffix of it."},
		{"the number of location.lines", len(s.Location.Lines), MaxRevisions, "Map the line into fewer revisions."},
		{"the number of location.paths", len(s.Location.Paths), MaxRevisions, "Map the line into fewer revisions."},
		{"the number of location.refused", len(s.Location.Refused), MaxRevisions, "Map the line into fewer revisions."},
		{"the number of location.builds", len(s.Location.Builds), MaxRevisions, "Resolve fewer builds."},
		{"the number of selector.hosts", len(s.Selector.Hosts), MaxSelectorGlobs, "Write fewer globs; one glob such as orders-* matches many hosts."},
		{"the number of selector.processes", len(s.Selector.Processes), MaxSelectorGlobs, "Write fewer globs; one glob such as github.com/acme/* matches many programs."},
		{"the number of selector.pids", len(s.Selector.Pids), MaxSelectorPids, "Select the processes by program (selector.processes) instead."},
		{"condition's length", len(s.Condition), MaxExprLen, "Write a shorter condition."},
		{"logMessage's length", len(s.LogMessage), MaxLogMessageLen, "Write a shorter log message."},
		{"the number of capture.exprs", len(s.Capture.Exprs), MaxExprs, "Capture fewer expressions; a struct's fields come with it."},
		{"hitCondition's length", len(s.HitCondition), MaxExprLen, "Write a number, or an operator and a number, such as >= 10."},
	} {
		if f.got > f.limit {
			return tooLarge(id, f.name, f.got, f.limit, f.instead)
		}
	}
	for rev, p := range s.Location.Paths {
		if len(p) > MaxPathLen {
			return tooLarge(id, fmt.Sprintf("the length of location.paths[%q]", ShortRevision(rev)), len(p), MaxPathLen, "Give the path inside the module.")
		}
	}
	for rev, why := range s.Location.Refused {
		if len(why) > MaxReasonLen {
			return tooLarge(id, fmt.Sprintf("the length of location.refused[%q]", ShortRevision(rev)), len(why), MaxReasonLen, "Say why in fewer words.")
		}
	}
	for build, b := range s.Location.Builds {
		if n := len(build) + len(b.Revision) + len(b.How) + len(b.Note) + len(b.Refused); n > MaxReasonLen {
			return tooLarge(id, fmt.Sprintf("the length of location.builds[%q]", ShortRevision(build)), n, MaxReasonLen, "Say why in fewer words.")
		}
	}
	for i, e := range s.Capture.Exprs {
		if len(e) > MaxExprLen {
			return tooLarge(id, fmt.Sprintf("the length of capture.exprs[%d]", i), len(e), MaxExprLen, "Write a shorter expression.")
		}
	}
	if err := s.checkSelector(); err != nil {
		return err
	}
	if err := s.Capture.check(id); err != nil {
		return err
	}
	if n := strings.Count(s.LogMessage, "{") - 2*strings.Count(s.LogMessage, "{{"); n > MaxLogExprs {
		return tooLarge(id, "the number of {expr} in logMessage", n, MaxLogExprs, "Interpolate fewer expressions, or capture a struct whole with capture.exprs.")
	}
	return nil
}

// checkSelector refuses globs and pids that can match nothing: a selector
// that matches nowhere gets no status from any agent, and the tracepoint
// would wait in silence.
func (s *Spec) checkSelector() error {
	for _, l := range []struct {
		name  string
		globs []string
	}{{"selector.hosts", s.Selector.Hosts}, {"selector.processes", s.Selector.Processes}} {
		for _, g := range l.globs {
			switch {
			case g == "":
				return Errorf(CodeBadRequest, "tracepoint %s: empty glob in %s. Drop it, or write * to match everything.", s.ID, l.name)
			case len(g) > MaxGlobLen:
				return tooLarge(s.ID, "the length of a glob in "+l.name, len(g), MaxGlobLen, "Write a shorter glob with * in it.")
			case strings.ContainsAny(g, `[]\`):
				return Errorf(CodeBadRequest, "tracepoint %s: glob %q in %s has %q, which RipTrace globs do not have: they know only * (any run of characters) and ? (one character). Write ? where one character varies.", s.ID, g, l.name, g[strings.IndexAny(g, `[]\`)])
			}
			if l.name == "selector.hosts" && strings.IndexFunc(g, notInHostGlob) >= 0 {
				// Host names are subject tokens: a glob with any other
				// character matches no host.
				return Errorf(CodeBadRequest, "tracepoint %s: glob %q in selector.hosts can match no host: host names are letters, digits, '-' and '_' (riptrace hosts lists them). Write the host's name, with * or ? where it varies.", s.ID, g)
			}
		}
	}
	for _, pid := range s.Selector.Pids {
		if pid <= 0 {
			return Errorf(CodeBadRequest, "tracepoint %s: selector.pids has %d, which is no process. Give pids from 1, as riptrace hosts lists them.", s.ID, pid)
		}
	}
	return nil
}

// notInHostGlob reports whether r can never be part of a host glob.
func notInHostGlob(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_*?", r))
}

// Validate checks the capture's limits against the bounds: each at least 0
// (0 takes the default) and at most its Max; and maxArrayValues to the power
// maxStructDepth, the values one variable may load, at most
// MaxCaptureValues. The debug adapter checks its capture attribute with it.
func (c Capture) Validate() error { return c.check("") }

func (c Capture) check(id string) error {
	name := func(field string) string {
		if id == "" {
			return "capture." + field
		}
		return "tracepoint " + id + ": capture." + field
	}
	d := DefaultCapture
	for _, f := range []struct {
		field      string
		got, limit int
		def        int
	}{
		{"stackDepth", c.StackDepth, MaxStackDepth, d.StackDepth},
		{"maxStringLen", c.MaxString, MaxStringLen, d.MaxString},
		{"maxArrayValues", c.MaxArray, MaxArrayValues, d.MaxArray},
		{"maxStructDepth", c.MaxDepth, MaxStructDepth, d.MaxDepth},
		{"maxVariables", c.MaxVariable, MaxVariables, d.MaxVariable},
	} {
		switch {
		case f.got < 0:
			return Errorf(CodeBadRequest, "%s is %d. Give 0 or more (0, or leaving it out, takes the default %d).", name(f.field), f.got, f.def)
		case f.got > f.limit:
			return Errorf(CodeTooLarge, "%s is %d, more than the %d an agent allows. Give at most %d (the default is %d).", name(f.field), f.got, f.limit, f.limit, f.def)
		}
	}
	arrays, depth := c.MaxArray, c.MaxDepth
	if arrays == 0 {
		arrays = d.MaxArray
	}
	if depth == 0 {
		depth = d.MaxDepth
	}
	if !powerWithin(arrays, depth, MaxCaptureValues) {
		return Errorf(CodeTooLarge, "%s %d with maxStructDepth %d could load %d^%d values for one variable, more than the %d an agent allows. Lower one of them: %d values to a depth of %d loads at most %d.",
			name("maxArrayValues"), arrays, depth, arrays, depth, MaxCaptureValues, d.MaxArray, d.MaxDepth, d.MaxArray*d.MaxArray)
	}
	return nil
}

// powerWithin reports whether base to the power exp is at most limit.
func powerWithin(base, exp, limit int) bool {
	v := 1
	for range exp {
		if v > limit/base {
			return false
		}
		v *= base
	}
	return true
}

// ValidateAt is Validate for a spec being declared at now: it also refuses
// one that has already expired, which every agent would drop at once.
func (s *Spec) ValidateAt(now time.Time) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.Expired(now) {
		return Errorf(CodeExpired, "tracepoint %s expired at %s, %s before it was declared. Give limits.expiresAt a later time, or none.",
			s.ID, s.Limits.ExpiresAt.UTC().Format(time.RFC3339), now.Sub(s.Limits.ExpiresAt).Round(time.Second))
	}
	return nil
}
