package delve

import (
	"go/token"
	_ "unsafe" // for go:linkname
)

// parseHitCondition is Delve's parser of hit conditions ("> 3", "% 2").
//
//go:linkname parseHitCondition github.com/go-delve/delve/pkg/proc.parseHitCondition
func parseHitCondition(hitCond string) (token.Token, int, error)

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
