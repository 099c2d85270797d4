package delve

import (
	"go/ast"
	"go/token"
	_ "unsafe" // for go:linkname

	"github.com/go-delve/delve/pkg/proc"
)

// parseHitCondition is Delve's parser of hit conditions ("> 3", "% 2").
//
//go:linkname parseHitCondition github.com/go-delve/delve/pkg/proc.parseHitCondition
func parseHitCondition(hitCond string) (token.Token, int, error)

// evalBreakpointCondition is Delve's own evaluation of a breakpoint's
// condition, so that conditions mean what they mean with Delve.
//
//go:linkname evalBreakpointCondition github.com/go-delve/delve/pkg/proc.evalBreakpointCondition
func evalBreakpointCondition(tgt *proc.Target, thread proc.Thread, cond ast.Expr) (bool, error)

// hitHolds reports whether a hit condition op v holds for the nth hit that
// met the condition, as Delve's checkHitCond does. No hit condition (op 0)
// always holds.
func hitHolds(op token.Token, n, v int) bool {
	switch op {
	case 0:
		return true
	case token.EQL:
		return n == v
	case token.NEQ:
		return n != v
	case token.GTR:
		return n > v
	case token.LSS:
		return n < v
	case token.GEQ:
		return n >= v
	case token.LEQ:
		return n <= v
	case token.REM:
		return v != 0 && n%v == 0
	}
	return false
}

// hitDone reports whether a hit condition op v, after n hits that met the
// condition, can hold no more, as Delve's breakpointConditionSatisfiable
// tells it.
func hitDone(op token.Token, n, v int) bool {
	switch op {
	case token.EQL, token.LEQ:
		return n >= v
	case token.LSS:
		return n >= v-1
	}
	return false
}

// countsEveryHit reports whether a hit condition op v, after n hits that
// met the condition, still needs every hit counted: the tracepoint's probes
// then stay in when its allowance is spent, as taking them out would lose
// count. No hit condition (op 0) needs none.
func countsEveryHit(op token.Token, n, v int) bool {
	switch op {
	case 0:
		return false
	case token.GTR, token.NEQ:
		return n <= v // past v, it holds for good
	case token.GEQ:
		return n < v
	}
	return true // %, and ==, <, <= until they can hold no more
}
