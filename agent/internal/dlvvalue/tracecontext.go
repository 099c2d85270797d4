package dlvvalue

import (
	"encoding/hex"
	"fmt"
	"go/constant"
	"reflect"
	"strings"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/fleet"
)

// OpenTelemetry keeps the current span in a context.Context as a value
// under a key of this type (go.opentelemetry.io/otel/trace's
// ContextWithSpan); the span is a value whose span context is one of these
// fields: a remote or unsampled span keeps it in sc, the SDK's recording
// span in spanContext, with its parent's in parent.
const (
	otelTracePkg    = "go.opentelemetry.io/otel/trace"
	otelContextKey  = otelTracePkg + ".traceContextKeyType"
	otelSpanContext = otelTracePkg + ".SpanContext"
)

// maxContextChain bounds the contexts walked from a captured one towards
// its root: a request's context is a few layers deep (the server's, a
// cancel, a few values), and a cycle in a corrupted one must end.
const maxContextChain = 32

// contextLoad loads one context of the chain with its fields, and a span's
// span context down to its ids, but not the contexts above it.
var contextLoad = proc.LoadConfig{FollowPointers: true, MaxVariableRecurse: 4, MaxArrayValues: 16, MaxStructFields: -1}

// TraceContext returns the W3C trace context that the first context.Context
// among vars carries, or nil. It walks the chain of contexts from the
// captured one towards its root and stops at the first span OpenTelemetry
// put there, the current one. What cannot be read (a value the eBPF
// backend's probe did not copy, say) ends the walk: no trace context is
// better than a wrong one.
func (cv Converter) TraceContext(scope *proc.EvalScope, vars []*proc.Variable) *fleet.TraceContext {
	w := contextWalk{scope: scope, check: cv.Check}
	for _, v := range vars {
		if v.Unreadable != nil || v.Kind != reflect.Interface || typeName(v) != "context.Context" {
			continue
		}
		if tc := w.walk(v); tc != nil {
			return tc
		}
	}
	return nil
}

// contextWalk reads contexts in scope. check, if set, sees every value it
// loads again, as Converter.Check does: the eBPF backend marks what its
// probe did not copy unreadable, where Delve would read it as zero.
type contextWalk struct {
	scope *proc.EvalScope
	check func(*proc.Variable)
}

// walk walks from ctx, a context.Context interface, to the first context
// that holds a span.
func (w contextWalk) walk(ctx *proc.Variable) *fleet.TraceContext {
	node := ctx
	for range maxContextChain {
		st := w.structOf(node, false)
		span, next, ok := contextStep(st)
		if !ok {
			// The capture's limits stopped short of what is needed:
			// load this context again, with its fields.
			st = w.structOf(node, true)
			span, next, ok = contextStep(st)
		}
		switch {
		case span != nil:
			return w.spanContext(span)
		case !ok || next == nil:
			return nil
		}
		node = next
	}
	return nil
}

// contextStep reads one context, st: the span it holds, if it is
// OpenTelemetry's, or else its parent (nil at the root). ok is false when
// what decides was not loaded.
func contextStep(st *proc.Variable) (span, parent *proc.Variable, ok bool) {
	if st == nil {
		return nil, nil, false
	}
	if key := field(st, "key"); key != nil {
		if key.Kind != reflect.Interface || len(key.Children) == 0 {
			return nil, nil, false
		}
		if typeName(&key.Children[0]) == otelContextKey {
			return field(st, "val"), nil, true
		}
	}
	// The parent: embedded as Context by valueCtx, cancelCtx and most;
	// withoutCancelCtx keeps it in c; timerCtx and afterFuncCtx embed a
	// cancelCtx.
	next := field(st, "Context")
	if next == nil {
		next = field(st, "c")
	}
	if cc := field(st, "cancelCtx"); next == nil && cc != nil {
		if next = field(cc, "Context"); next == nil {
			return nil, nil, false
		}
	}
	switch {
	case next == nil:
		return nil, nil, true // a root, or a context of unknown make
	case next.Kind != reflect.Interface:
		return nil, nil, true
	case next.Addr != 0 && len(next.Children) == 0 && next.Unreadable == nil:
		return nil, nil, false // not loaded
	}
	return nil, next, true
}

// structOf returns the struct an interface holds, directly or through a
// pointer, with its fields loaded; nil if it is nil, unreadable or no
// struct. With reload, it is loaded again with contextLoad's limits, not
// those of the capture: a trace id has more bytes than a capture shows.
func (w contextWalk) structOf(iface *proc.Variable, reload bool) *proc.Variable {
	if iface == nil || iface.Unreadable != nil {
		return nil
	}
	if len(iface.Children) == 0 || iface.Children[0].Kind == reflect.Ptr && len(iface.Children[0].Children) == 0 {
		// The capture's limits stopped before what the interface
		// holds: load a context.Context again from where it is.
		if iface.Addr == 0 || typeName(iface) != "context.Context" {
			return nil
		}
		lv, err := w.eval(fmt.Sprintf("*(*context.Context)(%#x)", iface.Addr))
		if err != nil || lv.Unreadable != nil || len(lv.Children) == 0 {
			return nil
		}
		iface = lv
	}
	v := &iface.Children[0]
	if v.Kind == reflect.Ptr {
		if len(v.Children) == 0 || v.Children[0].Addr == 0 {
			return nil
		}
		v = &v.Children[0]
	}
	if v.Unreadable != nil || v.Kind != reflect.Struct || v.Addr == 0 {
		return nil
	}
	if typeName(v) == "context.backgroundCtx" || typeName(v) == "context.todoCtx" {
		return nil // the root
	}
	if reload || len(v.Children) == 0 && v.Len > 0 {
		// Beyond what the last load reached: load it from its address.
		lv, err := w.eval(fmt.Sprintf("*(*%s)(%#x)", shortType(typeName(v)), v.Addr))
		if err != nil || lv.Unreadable != nil {
			return nil
		}
		v = lv
	}
	return v
}

// eval loads expr with contextLoad's limits, and has check see it.
func (w contextWalk) eval(expr string) (*proc.Variable, error) {
	v, err := w.scope.EvalExpression(expr, contextLoad)
	if err == nil && w.check != nil {
		w.check(v)
	}
	return v, err
}

// spanContext reads the span context of span, an interface holding an
// OpenTelemetry span.
func (w contextWalk) spanContext(span *proc.Variable) *fleet.TraceContext {
	st := w.structOf(span, true)
	if st == nil {
		return nil
	}
	sc := field(st, "sc")
	if sc == nil {
		sc = field(st, "spanContext")
	}
	if sc == nil || typeName(sc) != otelSpanContext {
		return nil
	}
	tc := &fleet.TraceContext{TraceID: hexBytes(field(sc, "traceID")), SpanID: hexBytes(field(sc, "spanID"))}
	if tc.TraceID == "" || strings.Trim(tc.TraceID, "0") == "" || tc.SpanID == "" {
		return nil // not read, or not valid: W3C's all-zero trace id
	}
	if r := field(sc, "remote"); r != nil && r.Value != nil && r.Value.Kind() == constant.Bool {
		tc.Remote = constant.BoolVal(r.Value)
	}
	if p := field(st, "parent"); p != nil && typeName(p) == otelSpanContext {
		if id := hexBytes(field(p, "spanID")); strings.Trim(id, "0") != "" {
			tc.Parent = id
		}
	}
	return tc
}

// field returns st's field called name, nil if it has none or it was not
// read.
func field(st *proc.Variable, name string) *proc.Variable {
	if st == nil || st.Unreadable != nil {
		return nil
	}
	for i := range st.Children {
		if st.Children[i].Name == name {
			if st.Children[i].Unreadable != nil {
				return nil
			}
			return &st.Children[i]
		}
	}
	return nil
}

// hexBytes renders a byte array's loaded values as hex; "" unless every
// byte was read.
func hexBytes(a *proc.Variable) string {
	if a == nil || a.Kind != reflect.Array || a.Len == 0 || int64(len(a.Children)) != a.Len {
		return ""
	}
	b := make([]byte, len(a.Children))
	for i := range a.Children {
		c := &a.Children[i]
		if c.Unreadable != nil || c.Value == nil {
			return ""
		}
		n, ok := constant.Uint64Val(c.Value)
		if !ok || n > 255 {
			return ""
		}
		b[i] = byte(n)
	}
	return hex.EncodeToString(b)
}

// typeName is the name of v's type, with its full package path.
func typeName(v *proc.Variable) string {
	if v.DwarfType != nil {
		return v.DwarfType.String()
	}
	if v.RealType != nil {
		return v.RealType.String()
	}
	return ""
}

// shortType names a type by its package's name, not its path, for Delve's
// expressions: Delve resolves trace.T to example.com/trace.T, while a cast
// to a quoted path ("example.com/trace".T) does not parse. A name two
// packages share may resolve to the wrong one: the callers check the type
// of what they read.
func shortType(name string) string {
	return name[strings.LastIndex(name, "/")+1:]
}
