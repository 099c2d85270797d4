// Package dlvvalue turns what Delve's evaluator reads into a hit's values,
// the one way both backends do it: the Delve backend reads a stopped
// process, the eBPF backend a snapshot its probe copied, and their hits must
// read the same. Values read the way a user wrote them: pointers are
// followed, and a generated protobuf message shows its fields, not its
// runtime's state (withoutGenerated). The eBPF backend, which decodes
// many hits of one process, reads their stacks through a StackCache, reads
// most of their values itself (Converter.Frame) and has the scope Delve's
// evaluator needs made only when a value asks for it (Scope). The common
// values print without Delve's printer, by its rules (printValue). A part
// of a value the optimizer left out at the line (an empty DWARF piece)
// reads as optimized away, never as the zero Delve reads there: both
// backends, and the eBPF backend's direct decoder, mark it by DroppedOf.
// A condition that reads such a part is refused, on all three condition
// paths, rather than decided on the zero (DroppedInCondition).
package dlvvalue

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/service/api"

	"github.com/riptrace/riptrace/fleet"
)

// LoadConfig turns a capture spec into Delve's load limits, filling the
// defaults of fleet.DefaultCapture.
func LoadConfig(c fleet.Capture) proc.LoadConfig {
	d := fleet.DefaultCapture
	pick := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	// The bounds again, for a spec that escaped validation.
	return proc.LoadConfig{
		FollowPointers:     true,
		MaxVariableRecurse: min(pick(c.MaxDepth, d.MaxDepth), fleet.MaxStructDepth),
		MaxStringLen:       min(pick(c.MaxString, d.MaxString), fleet.MaxStringLen),
		MaxArrayValues:     min(pick(c.MaxArray, d.MaxArray), fleet.MaxArrayValues),
		MaxStructFields:    -1,
	}
}

// Converter turns Delve's values into the hit's value tree. Unreadable, if
// set, renders a value Delve could not read before the shared rules do (the
// eBPF backend names what its probe did not copy); it returns false to leave
// the value to them. Check, if set, sees each value Delve loaded before it
// is converted, and may mark parts of it unreadable: Delve reads some
// values whose memory it could not read as zero (see the eBPF backend's
// markUncaptured).
//
// Frame, if set, reads the arguments (args set) or the locals of scope's
// frame in place of Delve's FunctionArguments and LocalVariables, in their
// order and without the function's results; ok false leaves them to Delve.
// The eBPF backend reads the common values of a hit there without Delve's
// evaluator.
//
// Warm, if set, warms Delve's module data for scope in place of
// WarmModuleData: the eBPF backend's hit memory does not serve the globals
// it reads.
type Converter struct {
	Unreadable func(v *api.Variable) (fleet.Variable, bool)
	Check      func(v *proc.Variable)
	Frame      func(scope Scope, load proc.LoadConfig, args bool) (vars []Var, ok bool)
	Warm       func(scope *proc.EvalScope)
	// Pieces, if set, keeps what is left out of the variables held in
	// pieces at PC, the PC of the hit (ReadWarm takes its scope's).
	Pieces *PieceCache
	PC     uint64
}

// A Scope returns the scope of the frame a hit is in, made when first
// asked for: the eBPF backend reads a hit whose values it decodes itself
// without Delve's stack walk, which only Delve's evaluator needs. It
// returns the same scope, or error, each time.
type Scope func() (*proc.EvalScope, error)

// scopeOf is the Scope of a scope already made.
func scopeOf(scope *proc.EvalScope) Scope {
	return func() (*proc.EvalScope, error) { return scope, nil }
}

// A Var is a variable of a frame as Converter.Frame reads it: by Delve's
// evaluator (Delve, loaded) or without it (Direct, what api.ConvertVar
// makes of what Delve would have loaded).
type Var struct {
	Delve    *proc.Variable
	Direct   *api.Variable
	DeclLine int64
	// Dropped is what the compiler left out of Direct at this PC, to be
	// marked as for Delve's variables (see DroppedOf).
	Dropped *Dropped
}

// Read reads the arguments, locals, expressions and log message that c and
// log ask for from scope into h, within load's limits.
func (cv Converter) Read(scope *proc.EvalScope, c fleet.Capture, load proc.LoadConfig, log []fleet.LogSegment, h *fleet.Hit) {
	cv.ReadScope(scopeOf(scope), c, load, log, h)
}

// ReadScope is Read from a Scope, made only if a value needs it.
func (cv Converter) ReadScope(scope Scope, c fleet.Capture, load proc.LoadConfig, log []fleet.LogSegment, h *fleet.Hit) {
	maxVars := c.MaxVariable
	if maxVars <= 0 {
		maxVars = fleet.DefaultCapture.MaxVariable
	}
	if c.Args {
		cv.readArgs(scope, load, maxVars, h)
	}
	if c.Locals {
		cv.readLocals(scope, load, maxVars, h)
	}
	if len(c.Exprs) == 0 && len(log) == 0 {
		return
	}
	s, err := scope()
	if err != nil {
		h.Errors = append(h.Errors, fmt.Sprintf("reading the frame: %v", err))
		return
	}
	for _, e := range c.Exprs {
		h.Exprs = append(h.Exprs, cv.eval(s, e, load))
	}
	if len(log) > 0 {
		var vals []fleet.Variable
		for _, seg := range log {
			if seg.Expr != "" {
				vals = append(vals, cv.eval(s, seg.Expr, load))
			}
		}
		h.Message = fleet.RenderLogMessage(log, vals)
	}
}

func (cv Converter) readArgs(scope Scope, load proc.LoadConfig, maxVars int, h *fleet.Hit) {
	if cv.Frame != nil {
		if vars, ok := cv.Frame(scope, load, true); ok {
			h.Args = cv.convertVars(vars, maxVars, 0)
			h.Trace = cv.traceContext(scope, delveVars(vars, 0))
			return
		}
	}
	s, err := scope()
	if err != nil {
		h.Errors = append(h.Errors, fmt.Sprintf("reading arguments: %v", err))
		return
	}
	vars, err := s.FunctionArguments(load)
	if err != nil {
		h.Errors = append(h.Errors, fmt.Sprintf("reading arguments: %v", err))
	}
	// Results are not set until the function returns; a line inside it
	// would show garbage or "empty OP stack" for them.
	vars = slices.DeleteFunc(vars, func(v *proc.Variable) bool { return v.Flags&proc.VariableReturnArgument != 0 })
	h.Args = cv.convertAll(vars, maxVars, 0)
	h.Trace = cv.TraceContext(s, vars)
}

func (cv Converter) readLocals(scope Scope, load proc.LoadConfig, maxVars int, h *fleet.Hit) {
	if cv.Frame != nil {
		if vars, ok := cv.Frame(scope, load, false); ok {
			h.Locals = cv.convertVars(vars, maxVars, h.Line)
			if h.Trace == nil {
				h.Trace = cv.traceContext(scope, delveVars(vars, h.Line))
			}
			return
		}
	}
	s, err := scope()
	if err != nil {
		h.Errors = append(h.Errors, fmt.Sprintf("reading locals: %v", err))
		return
	}
	vars, err := s.LocalVariables(load)
	if err != nil {
		h.Errors = append(h.Errors, fmt.Sprintf("reading locals: %v", err))
	}
	// Locals declared below the traced line are in scope for DWARF but
	// hold garbage: leave them out.
	h.Locals = cv.convertAll(vars, maxVars, h.Line)
	if h.Trace == nil {
		h.Trace = cv.TraceContext(s, slices.DeleteFunc(vars, func(v *proc.Variable) bool { return h.Line > 0 && v.DeclLine > int64(h.Line) }))
	}
}

// traceContext is TraceContext, with the scope made only for a variable
// that may hold one.
func (cv Converter) traceContext(scope Scope, vars []*proc.Variable) *fleet.TraceContext {
	if len(vars) == 0 {
		return nil
	}
	s, err := scope()
	if err != nil {
		return nil
	}
	return cv.TraceContext(s, vars)
}

// delveVars returns the variables of vars that Delve read, as far as line
// shows them (0: all). Only those can carry a trace context, which is in
// an interface: Converter.Frame leaves interfaces to Delve.
func delveVars(vars []Var, line int) []*proc.Variable {
	var out []*proc.Variable
	for _, v := range vars {
		if v.Delve != nil && (line <= 0 || v.DeclLine <= int64(line)) {
			out = append(out, v.Delve)
		}
	}
	return out
}

// ReadWarm is Read for a tracepoint that remembers in warm whether its
// values need Delve's module data warmed first (see WarmModuleData): it
// learns that once, from a read that failed for want of it, and reads again.
func (cv Converter) ReadWarm(scope *proc.EvalScope, c fleet.Capture, load proc.LoadConfig, log []fleet.LogSegment, h *fleet.Hit, warm *bool) {
	if cv.PC == 0 {
		cv.PC = scope.PC
	}
	cv.ReadWarmScope(scopeOf(scope), c, load, log, h, warm)
}

// ReadWarmScope is ReadWarm from a Scope: the module data is warmed when
// the scope is first made, as only Delve's reads need it.
//
// Until a value has needed it, scope is read as it is: the scope that
// warms is made only then (made for every hit, it and its state were
// two allocations a hit, 2 % of the eBPF agent's CPU).
func (cv Converter) ReadWarmScope(scope Scope, c fleet.Capture, load proc.LoadConfig, log []fleet.LogSegment, h *fleet.Hit, warm *bool) {
	if !*warm {
		cv.ReadScope(scope, c, load, log, h)
		if !NeedsModuleData(*h) {
			return
		}
		*warm = true
		h.Args, h.Locals, h.Exprs, h.Message, h.Errors, h.Trace = nil, nil, nil, "", nil, nil
	}
	cv.ReadScope(cv.warming(scope), c, load, log, h)
}

// warming returns scope, warming the module data the first time it makes
// the scope.
func (cv Converter) warming(scope Scope) Scope {
	warmed := false
	return func() (*proc.EvalScope, error) {
		s, err := scope()
		if err == nil && !warmed {
			warmed = true
			if cv.Warm != nil {
				cv.Warm(s)
			} else {
				WarmModuleData(s)
			}
		}
		return s, err
	}
}

// Stack reads the stack of th (as deep as c asks, one frame at least) and
// its goroutine into h, where the hit landed first: the backends' common
// start of a capture. It returns the frames and the goroutine (nil if th
// runs none); with no frame (and h.Errors saying why) the hit is placed at
// file:line.
func Stack(tgt *proc.Target, th proc.Thread, c fleet.Capture, h *fleet.Hit, file string, line int) ([]proc.Stackframe, *proc.G) {
	// Bounded here too: Delve allocates for the depth asked before it
	// walks, and a spec that escaped validation must not cost the agent
	// its memory.
	depth := min(c.StackDepth, fleet.MaxStackDepth)
	if depth <= 0 {
		depth = 1
	}
	frames, err := proc.ThreadStacktrace(tgt, th, depth)
	if err != nil || len(frames) == 0 {
		h.Errors = append(h.Errors, fmt.Sprintf("reading the stack: %v", err))
		h.File, h.Line = file, line
		return nil, nil
	}
	Place(h, frames, c.StackDepth > 0)
	g, gerr := proc.GetG(th)
	if gerr == nil && g != nil {
		h.Goroutine = g.ID
	}
	return frames, g
}

// Place fills in where h happened from a stack read at the hit: file, line
// and function of the top frame, and, if stack is set, the frames up to the
// first Delve could not read.
func Place(h *fleet.Hit, frames []proc.Stackframe, stack bool) {
	top := frames[0].Call
	h.File, h.Line = top.File, top.Line
	if top.Fn != nil {
		h.Function = top.Fn.Name
	}
	if !stack {
		return
	}
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

// NeedsModuleData reports whether a value of h failed because Delve's module
// data was loaded through register memory (see WarmModuleData).
func NeedsModuleData(h fleet.Hit) bool {
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

// WarmModuleData makes Delve read the runtime's module data from the
// process's memory. Delve loads it lazily, after every resume, through the
// memory of the first interface value it decodes; when that value lives in
// registers (an optimized build) the load reads out of bounds and every
// interface local of the hit shows unreadable. A global interface of the
// runtime loads it from real memory first. It costs a symbol lookup and a
// few reads, so tracepoints pay it only once they have met the problem.
func WarmModuleData(scope *proc.EvalScope) {
	scope.EvalExpression("runtime.divideError", proc.LoadConfig{MaxStringLen: 1, MaxVariableRecurse: 1, MaxStructFields: -1})
}

func (cv Converter) eval(scope *proc.EvalScope, expr string, cfg proc.LoadConfig) fleet.Variable {
	v, err := scope.EvalExpression(expr, cfg)
	if err != nil {
		return fleet.Variable{Name: expr, Value: "<error>", Unreadable: fmt.Sprintf("evaluating %s: %v", expr, err)}
	}
	if cv.Check != nil {
		cv.Check(v)
	}
	av := cv.convertVar(v)
	if v.Unreadable == nil && v.Addr >= fakeAddress {
		key := pieceKey{pc: cv.PC, name: expr, decl: -1}
		cv.Pieces.get(key, func() *Dropped { return droppedOfExpr(scope, expr) }).Mark(av)
	}
	fv := cv.convert(withoutGenerated(av), 0)
	fv.Name = expr
	return fv
}

func (cv Converter) convertAll(vars []*proc.Variable, max, line int) []fleet.Variable {
	out := make([]fleet.Variable, 0, len(vars))
	for _, v := range vars {
		if line > 0 && v.DeclLine > int64(line) {
			continue
		}
		if len(out) == max {
			out = append(out, fleet.Variable{Name: "…", Value: fmt.Sprintf("%d more not captured (maxVariables=%d)", len(vars)-max, max)})
			break
		}
		if cv.Check != nil {
			cv.Check(v)
		}
		out = append(out, cv.convert(withoutGenerated(cv.convertVar(v)), 0))
	}
	return out
}

// convertVars is convertAll for variables read by Converter.Frame.
func (cv Converter) convertVars(vars []Var, max, line int) []fleet.Variable {
	out := fleet.NewVariables(len(vars))
	for _, v := range vars {
		if line > 0 && v.DeclLine > int64(line) {
			continue
		}
		if len(out) == max {
			out = append(out, fleet.Variable{Name: "…", Value: fmt.Sprintf("%d more not captured (maxVariables=%d)", len(vars)-max, max)})
			break
		}
		if v.Direct != nil {
			out = append(out, cv.convert(withoutGenerated(v.Dropped.Mark(v.Direct)), 0))
			continue
		}
		if cv.Check != nil {
			cv.Check(v.Delve)
		}
		out = append(out, cv.convert(withoutGenerated(cv.convertVar(v.Delve)), 0))
	}
	return out
}

// convertVar is api.ConvertVar without the location expression's text for
// a value that was read: no hit shows it, and printing it was a tenth of
// what decoding a hit cost. An unreadable value keeps it, as its reason
// may need it (a value in a floating-point register, for the eBPF backend).
// The parts of v the compiler left out are marked (see DroppedOf).
func (cv Converter) convertVar(v *proc.Variable) *api.Variable {
	if v.Unreadable != nil {
		return api.ConvertVar(v)
	}
	d := cv.Pieces.droppedAtPC(cv.PC, v)
	le := v.LocationExpr
	v.LocationExpr = nil
	av := api.ConvertVar(v)
	v.LocationExpr = le
	return d.Mark(av)
}

// protoState is the type of the state field every message generated by
// protoc-gen-go starts with. Its neighbours, sizeCache and unknownFields,
// have aliases of int32 and []byte for types: a message is told by state.
const protoState = "google.golang.org/protobuf/internal/impl.MessageState"

// protoRuntime are the unexported fields of a generated message that hold
// the protobuf runtime's state, not the message's.
var protoRuntime = map[string]bool{"state": true, "sizeCache": true, "unknownFields": true, "extensionFields": true, "weakFields": true}

// withoutGenerated drops, in v and every value under it, the fields a code
// generator adds for its runtime rather than for the user: the protobuf
// runtime's (protoRuntime), and the XXX_ fields of messages generated by
// the older github.com/golang/protobuf. A message then renders by its
// fields, req=*pb.GetProductRequest {Id: "p1"}, rather than by a state
// that fills the line before Id. It returns v.
func withoutGenerated(v *api.Variable) *api.Variable {
	if v.Kind == reflect.Struct && generatedMessage(v) {
		kept := v.Children[:0]
		for _, c := range v.Children {
			if protoRuntime[c.Name] || strings.HasPrefix(c.Name, "XXX_") {
				v.Len--
				continue
			}
			kept = append(kept, c)
		}
		v.Children = kept
	}
	for i := range v.Children {
		withoutGenerated(&v.Children[i])
	}
	return v
}

// generatedMessage tells a struct generated for a protobuf message.
func generatedMessage(v *api.Variable) bool {
	for _, c := range v.Children {
		if c.Name == "state" && c.Type == protoState || strings.HasPrefix(c.Name, "XXX_") {
			return true
		}
	}
	return false
}

// maxTreeDepth bounds the children tree; Delve's load limits already bound
// what was read from the process.
const maxTreeDepth = 4

// convert turns Delve's value into the hit's tree. Pointers are followed: a
// pointer's children are those of the value it points to, so a user sees
// req.ID rather than an address.
func (cv Converter) convert(v *api.Variable, depth int) fleet.Variable {
	if v.Unreadable != "" && cv.Unreadable != nil {
		if fv, ok := cv.Unreadable(v); ok {
			return fv
		}
	}
	fv := fleet.Variable{Name: v.Name, Type: shortenType(v.Type)}
	if v.Unreadable != "" {
		fv.Value = "<unreadable>"
		if OptimizedAway(v.Unreadable) {
			fv.Value = "<optimized away>"
		}
		fv.Unreadable = ExplainUnreadable(v.Unreadable)
		return fv
	}
	fv.Value = valueString(v)
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
					return cv.withMapChildren(fv, &inner, depth)
				}
				if inner.Kind == reflect.Slice || inner.Kind == reflect.Array {
					return cv.withIndexChildren(fv, kids, depth)
				}
			} else {
				return fv
			}
		}
	}
	switch v.Kind {
	case reflect.Map:
		return cv.withMapChildren(fv, v, depth)
	case reflect.Slice, reflect.Array:
		return cv.withIndexChildren(fv, kids, depth)
	case reflect.String, reflect.Func, reflect.Chan, reflect.Complex64, reflect.Complex128:
		return fv
	}
	if len(kids) > 0 {
		fv.Children = make([]fleet.Variable, 0, len(kids))
	}
	for i := range kids {
		fv.Children = append(fv.Children, cv.convert(&kids[i], depth+1))
	}
	return fv
}

// valueString is how Delve prints v. A number or a boolean, most of the
// values of a hit, prints as its value, and a string quoted, with how much
// of it was not loaded: Delve's printer writes just that (api's
// writeBasicType), through a buffer and fmt.
func valueString(v *api.Variable) string {
	if v.Unreadable == "" {
		switch v.Kind {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
			if v.Value != "" {
				return v.Value
			}
		case reflect.String:
			return quoteString(v)
		}
	}
	if s, ok := printValue(v); ok {
		if checkPrinter.Load() {
			if want := delvePrints(v); s != want {
				panic(fmt.Sprintf("printValue printed %q where Delve prints %q", s, want))
			}
		}
		return s
	}
	return delvePrints(v)
}

func (cv Converter) withIndexChildren(fv fleet.Variable, kids []api.Variable, depth int) fleet.Variable {
	if len(kids) > 0 {
		fv.Children = make([]fleet.Variable, 0, len(kids))
	}
	for i := range kids {
		c := cv.convert(&kids[i], depth+1)
		c.Name = "[" + strconv.Itoa(i) + "]"
		fv.Children = append(fv.Children, c)
	}
	return fv
}

// withMapChildren names each entry after its key; Delve lists maps as
// alternating keys and values.
func (cv Converter) withMapChildren(fv fleet.Variable, m *api.Variable, depth int) fleet.Variable {
	kids := m.Children
	if len(kids) > 1 {
		fv.Children = make([]fleet.Variable, 0, len(kids)/2)
	}
	for i := 0; i+1 < len(kids); i += 2 {
		c := cv.convert(&kids[i+1], depth+1)
		c.Name = "[" + valueString(&kids[i]) + "]"
		fv.Children = append(fv.Children, c)
	}
	sort.SliceStable(fv.Children, func(i, j int) bool { return fv.Children[i].Name < fv.Children[j].Name })
	return fv
}

// OptimizedAway reports whether Delve could not read a value because the
// optimizer kept no copy of it.
func OptimizedAway(reason string) bool {
	return strings.Contains(reason, "loclist") || strings.Contains(reason, "optimized")
}

// ExplainUnreadable adds what the user can do to Delve's terse reasons.
func ExplainUnreadable(reason string) string {
	switch {
	case reason == partOptimizedAway:
		return reason + " (the optimizer keeps no copy of this part of the value at this line; trace a line where it is used, or build with -gcflags=all=-N -l)"
	case OptimizedAway(reason):
		return reason + " (the optimizer keeps no copy of this variable at this line; trace a line where it is used, or build with -gcflags=all=-N -l)"
	case strings.Contains(reason, "no location"):
		return reason + " (the variable has no storage at this line: it is dead or not yet assigned)"
	}
	return reason
}
