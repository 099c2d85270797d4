package ebpf

// The conversion from Delve's values to the hit's tree below is the Delve
// backend's (agent/delve/capture.go), so that both backends render a value
// the same way; the differential tests hold them to it. It differs where a
// value was not copied by the BPF program: that reads "<not captured: …>".

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/service/api"

	"github.com/riptrace/riptrace/fleet"
)

// loadConfig turns a capture spec into Delve's load limits, filling the
// defaults of fleet.DefaultCapture.
func loadConfig(c fleet.Capture) proc.LoadConfig {
	d := fleet.DefaultCapture
	pick := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	return proc.LoadConfig{
		FollowPointers:     true,
		MaxVariableRecurse: pick(c.MaxDepth, d.MaxDepth),
		MaxStringLen:       pick(c.MaxString, d.MaxString),
		MaxArrayValues:     pick(c.MaxArray, d.MaxArray),
		MaxStructFields:    -1,
	}
}

// capture reads what tp asks for from the snapshot of one hit; keep is false
// when tp's condition does not hold, err says why it cannot be decided.
func (t *target) capture(tp *tracepoint) (h fleet.Hit, keep bool, err error) {
	tgt := t.tgt
	th := t.snap.thread
	h = fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid, Time: time.Now().UnixNano()}
	c := tp.spec.Capture
	depth := c.StackDepth
	if depth <= 0 {
		depth = 1
	}
	frames, err := proc.ThreadStacktrace(tgt, th, depth)
	if err != nil || len(frames) == 0 {
		h.Errors = append(h.Errors, fmt.Sprintf("reading the stack: %v", err))
		h.File, h.Line = tp.file, tp.spec.Location.Line
		return h, tp.spec.Condition == "", nil
	}
	top := frames[0].Call
	h.File, h.Line = top.File, top.Line
	if top.Fn != nil {
		h.Function = top.Fn.Name
	}
	if c.StackDepth > 0 {
		for _, f := range frames {
			if f.Err != nil {
				break
			}
			fr := fleet.Frame{File: f.Call.File, Line: f.Call.Line, PC: f.Call.PC}
			if f.Call.Fn != nil {
				fr.Function = f.Call.Fn.Name
			}
			h.Stack = append(h.Stack, fr)
		}
	}
	g, gerr := proc.GetG(th)
	if gerr == nil && g != nil {
		h.Goroutine = g.ID
	}
	// Only the top frame: Delve would prefetch the caller's whole frame
	// too, which the probe copied only the links of.
	scope := proc.FrameToScope(tgt, th.ProcessMemory(), g, th.ThreadID(), frames[0])
	if tp.spec.Condition != "" {
		v, err := scope.EvalExpression(tp.spec.Condition, proc.LoadConfig{})
		if err == nil && v.Unreadable != nil {
			err = v.Unreadable
		}
		if err == nil && v.Kind != reflect.Bool {
			err = fmt.Errorf("it is a %s, not a boolean", v.Kind)
		}
		if err != nil {
			hint := ""
			if notCaptured(err.Error()) {
				hint = " (it reads memory the uprobe does not copy: trace it with the delve backend)"
			}
			return h, false, fleet.Errorf(fleet.CodeBadCondition, "condition %q of tracepoint %s failed at %s:%d: %v%s; the tracepoint was removed: fix the condition and set it again", tp.spec.Condition, tp.spec.ID, tp.file, tp.spec.Location.Line, err, hint)
		}
		if !constantTrue(v) {
			return h, false, nil
		}
	}
	if tp.warm {
		warmModuleData(scope)
	}
	t.readValues(scope, tp, &h)
	if !tp.warm && needsModuleData(h) {
		tp.warm = true
		warmModuleData(scope)
		h.Args, h.Locals, h.Exprs, h.Message, h.Errors = nil, nil, nil, "", nil
		t.readValues(scope, tp, &h)
	}
	return h, true, nil
}

func constantTrue(v *proc.Variable) bool {
	return v.Value != nil && v.Value.String() == "true"
}

// notCaptured reports whether an unreadable reason comes from memory the
// probe did not copy.
func notCaptured(reason string) bool {
	return strings.Contains(reason, errNotCaptured.Error())
}

// readValues reads the arguments, locals, expressions and log message tp
// asks for into h.
func (t *target) readValues(scope *proc.EvalScope, tp *tracepoint, h *fleet.Hit) {
	c := tp.spec.Capture
	maxVars := c.MaxVariable
	if maxVars <= 0 {
		maxVars = fleet.DefaultCapture.MaxVariable
	}
	if c.Args {
		vars, err := scope.FunctionArguments(tp.load)
		if err != nil {
			h.Errors = append(h.Errors, fmt.Sprintf("reading arguments: %v", err))
		}
		// Results are not set until the function returns; a line inside it
		// would show garbage or "empty OP stack" for them.
		vars = slices.DeleteFunc(vars, func(v *proc.Variable) bool { return v.Flags&proc.VariableReturnArgument != 0 })
		h.Args = convertAll(vars, maxVars, 0)
	}
	if c.Locals {
		vars, err := scope.LocalVariables(tp.load)
		if err != nil {
			h.Errors = append(h.Errors, fmt.Sprintf("reading locals: %v", err))
		}
		// Locals declared below the traced line are in scope for DWARF but
		// hold garbage: leave them out.
		h.Locals = convertAll(vars, maxVars, h.Line)
	}
	for _, e := range c.Exprs {
		h.Exprs = append(h.Exprs, evalVar(scope, e, tp.load))
	}
	if len(tp.log) > 0 {
		var b strings.Builder
		for _, seg := range tp.log {
			if seg.Expr == "" {
				b.WriteString(seg.Text)
				continue
			}
			b.WriteString(logValue(evalVar(scope, seg.Expr, tp.load)))
		}
		h.Message = b.String()
	}
}

// needsModuleData reports whether a value of h failed because Delve's module
// data was loaded through register memory (see warmModuleData).
func needsModuleData(h fleet.Hit) bool {
	var walk func([]fleet.Variable) bool
	walk = func(vs []fleet.Variable) bool {
		for _, v := range vs {
			if strings.Contains(v.Unreadable, "module data") || walk(v.Children) {
				return true
			}
		}
		return false
	}
	return walk(h.Args) || walk(h.Locals) || walk(h.Exprs) || strings.Contains(h.Message, "module data")
}

// warmModuleData makes Delve read the runtime's module data from the
// process's memory. Delve loads it lazily, after every resume, through the
// memory of the first interface value it decodes; when that value lives in
// registers (an optimized build) the load reads out of bounds and every
// interface local of the hit shows unreadable. A global interface of the
// runtime loads it from real memory first. It costs a symbol lookup and a
// few reads, so tracepoints pay it only once they have met the problem.
func warmModuleData(scope *proc.EvalScope) {
	scope.EvalExpression("runtime.divideError", proc.LoadConfig{MaxStringLen: 1, MaxVariableRecurse: 1, MaxStructFields: -1})
}

func evalVar(scope *proc.EvalScope, expr string, cfg proc.LoadConfig) fleet.Variable {
	v, err := scope.EvalExpression(expr, cfg)
	if err != nil {
		return fleet.Variable{Name: expr, Value: "<error>", Unreadable: fmt.Sprintf("evaluating %s: %v", expr, err)}
	}
	fv := convert(api.ConvertVar(v), 0)
	fv.Name = expr
	return fv
}

// logValue renders a value for a log message the way fmt's %v would: strings
// without quotes.
func logValue(v fleet.Variable) string {
	if v.Unreadable != "" {
		if optimizedAway(v.Unreadable) {
			return "<" + v.Name + ": optimized away>"
		}
		return "<" + v.Name + ": " + v.Unreadable + ">"
	}
	if strings.HasPrefix(v.Type, "string") && len(v.Value) >= 2 && v.Value[0] == '"' {
		if s, err := strconv.Unquote(v.Value); err == nil {
			return s
		}
	}
	return v.Value
}

func convertAll(vars []*proc.Variable, max, line int) []fleet.Variable {
	out := make([]fleet.Variable, 0, len(vars))
	for _, v := range vars {
		if line > 0 && v.DeclLine > int64(line) {
			continue
		}
		if len(out) == max {
			out = append(out, fleet.Variable{Name: "…", Value: fmt.Sprintf("%d more not captured (maxVariables=%d)", len(vars)-max, max)})
			break
		}
		out = append(out, convert(api.ConvertVar(v), 0))
	}
	return out
}

// maxTreeDepth bounds the children tree; Delve's load limits already bound
// what was read from the process.
const maxTreeDepth = 4

// convert turns Delve's value into the hit's tree. Pointers are followed: a
// pointer's children are those of the value it points to, so a user sees
// req.ID rather than an address.
func convert(v *api.Variable, depth int) fleet.Variable {
	fv := fleet.Variable{Name: v.Name, Type: api.ShortenType(v.Type)}
	if v.Unreadable != "" {
		fv.Value = "<unreadable>"
		if v.Unreadable == "read out of bounds" && strings.Contains(strings.ToLower(v.LocationExpr), "xmm") {
			// In a floating-point register, which a uprobe's program does
			// not see; Delve says only that the register was empty.
			fv.Value = "<not captured: " + kindName(v.Kind) + ">"
			fv.Unreadable = "the value is in a floating-point register at this line, which a uprobe cannot read; trace a line where it is in memory, or trace with the delve backend"
			return fv
		}
		switch {
		case notCaptured(v.Unreadable):
			fv.Value = "<not captured: " + kindName(v.Kind) + ">"
			fv.Unreadable = "the uprobe copied a bounded part of memory and not this " + kindName(v.Kind) + "; raise the capture limits, or trace with the delve backend to read everything"
			return fv
		case optimizedAway(v.Unreadable):
			fv.Value = "<optimized away>"
		}
		fv.Unreadable = explainUnreadable(v.Unreadable)
		return fv
	}
	fv.Value = v.StringWithOptions("", "", api.PrettyShortenType)
	if depth >= maxTreeDepth {
		return fv
	}
	kids := v.Children
	if v.Kind == reflect.Ptr || v.Kind == reflect.Interface {
		if len(kids) == 1 {
			inner := kids[0]
			if inner.Kind == reflect.Struct || inner.Kind == reflect.Ptr || inner.Kind == reflect.Interface || inner.Kind == reflect.Slice || inner.Kind == reflect.Map || inner.Kind == reflect.Array {
				kids = inner.Children
				if inner.Kind == reflect.Map {
					return withMapChildren(fv, &inner, depth)
				}
				if inner.Kind == reflect.Slice || inner.Kind == reflect.Array {
					return withIndexChildren(fv, kids, depth)
				}
			} else {
				return fv
			}
		}
	}
	switch v.Kind {
	case reflect.Map:
		return withMapChildren(fv, v, depth)
	case reflect.Slice, reflect.Array:
		return withIndexChildren(fv, kids, depth)
	case reflect.String, reflect.Func, reflect.Chan, reflect.Complex64, reflect.Complex128:
		return fv
	}
	for i := range kids {
		fv.Children = append(fv.Children, convert(&kids[i], depth+1))
	}
	return fv
}

func withIndexChildren(fv fleet.Variable, kids []api.Variable, depth int) fleet.Variable {
	for i := range kids {
		c := convert(&kids[i], depth+1)
		c.Name = "[" + strconv.Itoa(i) + "]"
		fv.Children = append(fv.Children, c)
	}
	return fv
}

// withMapChildren names each entry after its key; Delve lists maps as
// alternating keys and values.
func withMapChildren(fv fleet.Variable, m *api.Variable, depth int) fleet.Variable {
	kids := m.Children
	for i := 0; i+1 < len(kids); i += 2 {
		c := convert(&kids[i+1], depth+1)
		c.Name = "[" + kids[i].StringWithOptions("", "", api.PrettyShortenType) + "]"
		fv.Children = append(fv.Children, c)
	}
	sort.SliceStable(fv.Children, func(i, j int) bool { return fv.Children[i].Name < fv.Children[j].Name })
	return fv
}

func optimizedAway(reason string) bool {
	return strings.Contains(reason, "loclist") || strings.Contains(reason, "optimized")
}

// explainUnreadable adds what the user can do to Delve's terse reasons.
func explainUnreadable(reason string) string {
	switch {
	case optimizedAway(reason):
		return reason + " (the optimizer keeps no copy of this variable at this line; trace a line where it is used, or build with -gcflags=all=-N -l)"
	case strings.Contains(reason, "no location"):
		return reason + " (the variable has no storage at this line: it is dead or not yet assigned)"
	}
	return reason
}

// kindName names a kind for "<not captured: …>".
func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Ptr:
		return "pointer"
	case reflect.Invalid:
		return "value"
	}
	return k.String()
}

// bucket is a token bucket allowing rate hits per second with a burst of
// rate. A rate of zero or less allows everything.
type bucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

func (b *bucket) init(rate int) {
	b.rate = float64(rate)
	b.tokens = b.rate
}

func (b *bucket) take(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
