package agent

import (
	"slices"
	"strconv"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// The agent writes log messages itself, from values it has redacted: a
// backend evaluates a log message's expressions as captured expressions,
// after the spec's own, and the agent renders the message once Redactor.Hit
// has gone over them. A struct in a message ({cfg}) then shows its secret
// fields as <redacted>, as it does in the hit.

// logPlan is how the agent writes one tracepoint's log message.
type logPlan struct {
	segs  []fleet.LogSegment
	exprs int // the spec's own expressions, which come first in a hit
	// only names the log message's expressions that are none of the
	// spec's own.
	only []string
}

// splitLog returns the spec a backend installs for spec, whose log
// message's expressions are captured expressions, and the plan to write the
// message from them. spec has passed Validate.
func splitLog(spec fleet.Spec) (fleet.Spec, logPlan) {
	segs, err := fleet.ParseLogMessage(spec.LogMessage)
	if err != nil || len(segs) == 0 {
		return spec, logPlan{}
	}
	lp := logPlan{segs: segs, exprs: len(spec.Capture.Exprs)}
	exprs := append([]string(nil), spec.Capture.Exprs...)
	for _, s := range segs {
		if s.Expr != "" {
			exprs = append(exprs, s.Expr)
			if !slices.Contains(spec.Capture.Exprs, s.Expr) {
				lp.only = append(lp.only, s.Expr)
			}
		}
	}
	spec.Capture.Exprs, spec.LogMessage = exprs, ""
	return spec, lp
}

// render writes h's message from the values after the spec's own
// expressions, and leaves those alone in h. A hit captured nothing when its
// stack could not be read; then it has no message, as on the backends.
func (lp logPlan) render(h *fleet.Hit) {
	if lp.segs == nil || len(h.Exprs) < lp.exprs {
		return
	}
	vals := h.Exprs[lp.exprs:]
	h.Exprs = h.Exprs[:lp.exprs:lp.exprs]
	if len(h.Exprs) == 0 {
		h.Exprs = nil
	}
	if len(vals) > 0 {
		h.Message = fleet.RenderLogMessage(lp.segs, vals)
	}
}

// explain words a backend's reason for its choice as the user wrote the
// spec: the backend knows the log message's expressions only as captured
// expressions, so it names one as `the expression "total"`.
func (lp logPlan) explain(why string) string {
	for _, e := range lp.only {
		why = strings.ReplaceAll(why, "the expression "+strconv.Quote(e), "the log message")
	}
	return why
}
