package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/riptrace/riptrace/fleet"
)

// printPlaced writes one hit of the timeline in the text form of `riptrace
// trace`: its stream sequence, when it ran on the server's clock within its
// agent's clock bound, where, its marks and its values.
//
//	#14 10:04:05.123456 ±0.2ms shop-b payments[4242] g37 payments/main.go:42 main.charge
//	    uncertain: may have run before #12, closer to it than the two clocks are known
//	    args:   req=*main.ChargeRequest {OrderID: "ord-0001", …}
func printPlaced(w io.Writer, p *fleet.Placed, stack bool) {
	h := &p.Hit
	bound := "±?"
	if p.Bound != nil {
		bound = "±" + fmtDuration(time.Duration(*p.Bound))
	}
	fmt.Fprintf(w, "#%s %s %s %s %s[%d] g%d %s:%d %s\n", h.Number(), p.CoordinatedTime.Local().Format("15:04:05.000000"), bound,
		h.Host, h.Process.Exe, h.Pid, h.Goroutine, shortPath(h.File), h.Line, h.Function)
	if p.Late {
		fmt.Fprintf(w, "    late:   arrived %s after it ran, after later hits were shown; it belongs at %s\n",
			fmtDuration(h.ServerTime.Sub(p.CoordinatedTime)), p.CoordinatedTime.Local().Format("15:04:05.000000"))
	}
	switch {
	case p.Note != "":
		fmt.Fprintf(w, "    uncertain: %s\n", p.Note)
	case p.Uncertain:
		fmt.Fprintf(w, "    uncertain: may have run before #%s, closer to it than the two clocks are known\n", fleet.HitNumber(p.UncertainWith, p.UncertainWithPart))
	case p.OrderedByCall != 0:
		fmt.Fprintf(w, "    order:  after #%s, closer to it than the clocks are known, but the call between them says so\n", fleet.HitNumber(p.OrderedByCall, p.OrderedByCallPart))
	}
	if tc := h.Trace; tc != nil {
		from := ""
		if tc.Remote {
			from = " (the caller's, received with the request)"
		}
		fmt.Fprintf(w, "    trace:  %s span %s%s\n", tc.TraceID, tc.SpanID, from)
	}
	printBody(w, h, stack)
}

// fmtDuration prints a duration with three significant places, in ms
// under a second.
func fmtDuration(d time.Duration) string {
	if d < time.Second && d > -time.Second {
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	}
	return d.Round(time.Millisecond).String()
}

func printBody(w io.Writer, h *fleet.Hit, stack bool) {
	if h.Message != "" {
		fmt.Fprintf(w, "    log:    %s\n", h.Message)
	}
	if len(h.Args) > 0 {
		fmt.Fprintf(w, "    args:   %s\n", joinVars(h.Args))
	}
	if len(h.Locals) > 0 {
		fmt.Fprintf(w, "    locals: %s\n", joinVars(h.Locals))
	}
	if len(h.Exprs) > 0 {
		fmt.Fprintf(w, "    exprs:  %s\n", joinVars(h.Exprs))
	}
	for _, e := range h.Errors {
		fmt.Fprintf(w, "    error:  %s\n", e)
	}
	if h.Dropped > 0 {
		fmt.Fprintf(w, "    (%d hits dropped by the rate limit before this one)\n", h.Dropped)
	}
	if stack {
		for _, f := range h.Stack {
			fmt.Fprintf(w, "      at %s (%s:%d)\n", f.Function, shortPath(f.File), f.Line)
		}
	}
}

func joinVars(vs []fleet.Variable) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		if v.Unreadable != "" && v.Value == "<unreadable>" {
			parts[i] = fmt.Sprintf("%s=<unreadable: %s>", v.Name, clip(v.Unreadable, maxValueWidth))
			continue
		}
		parts[i] = v.Name + "=" + clip(v.Value, maxValueWidth)
	}
	return strings.Join(parts, " ")
}

// maxValueWidth bounds one value on a terminal line; --json has it all.
const maxValueWidth = 160

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// shortPath keeps the last two elements of a path: enough to recognize the
// file, short enough for a terminal line.
func shortPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return p
	}
	if j := strings.LastIndexByte(p[:i], '/'); j >= 0 {
		return p[j+1:]
	}
	return p
}

func printStatus(w io.Writer, ev fleet.StatusEvent) {
	if ev.Deleted {
		why := "the agent withdrew this entry"
		if ev.Pid != 0 {
			why = "no longer traced there: the tracepoint was cleared in this process"
		} else if ev.Message != "" {
			why = "no longer so: " + ev.Message
		}
		fmt.Fprintf(w, "riptrace: %s: %s\n", who(ev.Status), why)
		return
	}
	fmt.Fprintf(w, "riptrace: %s: %s: %s\n", who(ev.Status), ev.State, ev.Message)
}

// who names the host, or the process, a status entry is about.
func who(st fleet.Status) string {
	switch {
	case st.Pid != 0 && st.Process.Exe != "":
		return fmt.Sprintf("%s %s[%d]", st.Host, st.Process.Exe, st.Pid)
	case st.Pid != 0:
		return fmt.Sprintf("%s pid %d", st.Host, st.Pid)
	}
	return "host " + st.Host
}
