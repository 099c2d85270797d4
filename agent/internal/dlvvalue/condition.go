package dlvvalue

import (
	"encoding/binary"
	"fmt"
	"go/ast"
	"go/parser"
	"go/types"
	"path/filepath"
	"sync/atomic"

	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/go-delve/delve/pkg/proc"
)

// A condition that reads a part of a value the compiler left out at the
// tracepoint's PC would be decided on the zero Delve reads there: p.b == 0
// would hold for a b that was 7, and show or hide a hit on a wrong value.
// Delve itself stops and reports an error for a condition it cannot read;
// RipTrace does the same for one that reads a part left out, before any
// hit is decided on it. Where a part is left out is fixed by the DWARF
// location lists at each PC, so a backend decides it once per PC, at Set
// where it can (DroppedInCondition) and else at the first hit there
// (CondDroppedInScope).

// DroppedConditionError says that a tracepoint's condition reads a part of
// a value the compiler left out at the tracepoint's line.
type DroppedConditionError struct {
	Operand string // as written in the condition: p.b
	File    string
	Line    int
}

func (e *DroppedConditionError) Error() string {
	return fmt.Sprintf("the condition reads %s, which the compiler optimized away at %s:%d in this build. Trace a line where it is live, or build with -gcflags=all=-N -l",
		e.Operand, filepath.Base(e.File), e.Line)
}

// CondDropped returns the first operand of cond that reads a part of a
// variable the compiler left out, "" if none: lookup reads a variable by
// name (as scope.EvalExpression with an empty LoadConfig does), and fails
// for a name that is no local (a package, a global, a constant). An
// operand whose part cannot be told (a computed index, a pointer followed)
// counts if its variable has any part left out.
func CondDropped(cond string, lookup func(name string) (*proc.Variable, error)) string {
	e, err := parser.ParseExpr(cond)
	if err != nil {
		return ""
	}
	found := ""
	// check sets found if operand x reads a part left out; lenOnly when
	// only its length is read (len(x)).
	check := func(x ast.Expr, lenOnly bool) {
		root, path := partPath(x)
		if root == nil {
			return
		}
		v, err := lookup(root.Name)
		if err != nil || v == nil {
			return
		}
		d := droppedAlong(droppedOfVar(v), typeOf(v), path)
		if d == nil || lenOnly && !d.Whole && len(d.Parts) == 0 {
			return // a slice's length is read, not its capacity
		}
		found = types.ExprString(x)
	}
	var walk func(n ast.Node) bool
	walk = func(n ast.Node) bool {
		if found != "" {
			return false
		}
		switch x := n.(type) {
		case *ast.CallExpr:
			if fn, ok := x.Fun.(*ast.Ident); ok && fn.Name == "len" && len(x.Args) == 1 {
				if root, _ := partPath(x.Args[0]); root != nil {
					check(x.Args[0], true)
					inspectIndexes(x.Args[0], walk)
					return false
				}
			}
		case *ast.Ident, *ast.SelectorExpr, *ast.IndexExpr:
			if root, _ := partPath(x.(ast.Expr)); root != nil {
				check(x.(ast.Expr), false)
				inspectIndexes(x.(ast.Expr), walk)
				return false
			}
		}
		return true
	}
	ast.Inspect(e, walk)
	return found
}

// inspectIndexes walks the indexes of x, a chain of fields and indexes:
// they are operands too (xs[k]).
func inspectIndexes(x ast.Expr, walk func(ast.Node) bool) {
	_, path := partPath(x)
	for _, p := range path {
		if ix, ok := p.(*ast.IndexExpr); ok {
			ast.Inspect(ix.Index, walk)
		}
	}
}

// CondDroppedAt is CondDropped at pc of bi, decided from DWARF alone
// before any hit: the variables are read with made-up registers and zero
// memory, which give their locations at pc and nothing else. ok is false
// where it cannot be decided so (no function, or an inlined call, whose
// variables Delve reads from the inlined function's own frame): the first
// hit there decides it.
func CondDroppedAt(bi *proc.BinaryInfo, pc uint64, cond string) (operand string, ok bool) {
	defer func() {
		// Delve's evaluator without a process may fail where this did
		// not foresee: the first hit decides then.
		if recover() != nil {
			operand, ok = "", false
		}
	}()
	scope := fakeScope(bi, pc)
	if scope == nil {
		return "", false
	}
	return CondDropped(cond, func(name string) (*proc.Variable, error) {
		return scope.EvalExpression(name, proc.LoadConfig{})
	}), true
}

// fakeScope is a scope at pc of bi with made-up registers and zero memory,
// where Delve's evaluator reads where each variable is and nothing else;
// nil at an inlined call's PC (see inlinedAt).
func fakeScope(bi *proc.BinaryInfo, pc uint64) *proc.EvalScope {
	file, line, fn := bi.PCToLine(pc)
	if fn == nil || inlinedAt(bi, fn, pc) {
		return nil
	}
	regs := op.NewDwarfRegisters(bi.Images[0].StaticBase, nil, binary.LittleEndian, 16, 7, 6, 0)
	const sp = 1 << 40
	for r := uint64(0); r < 16; r++ {
		regs.AddReg(r, op.DwarfRegisterFromUint64(sp+r*8))
	}
	regs.AddReg(16, op.DwarfRegisterFromUint64(pc)) // Delve finds the location list entry by it
	regs.CFA = sp + 1<<16
	regs.FrameBase = regs.CFA
	return &proc.EvalScope{Location: proc.Location{PC: pc, File: file, Line: line, Fn: fn}, Regs: *regs, Mem: zeroMemory{}, BinInfo: bi}
}

// zeroMemory reads as zeros everywhere: the values read through it are not
// used, only where they are.
type zeroMemory struct{}

func (zeroMemory) ReadMemory(buf []byte, addr uint64) (int, error) {
	clear(buf)
	return len(buf), nil
}

func (zeroMemory) WriteMemory(addr uint64, data []byte) (int, error) {
	return 0, fmt.Errorf("writing %d bytes at %#x: read-only", len(data), addr)
}

// DroppedInCondition decides cond at each of pcs from DWARF
// (CondDroppedAt): err, a *DroppedConditionError, says what it reads left
// out at the first PC where it does; undecided are the PCs whose first hit
// must decide it (CondDroppedInScope), nil if none.
func DroppedInCondition(bi *proc.BinaryInfo, pcs []uint64, cond string) (undecided map[uint64]bool, err error) {
	if cond == "" {
		return nil, nil
	}
	for _, pc := range pcs {
		operand, ok := "", false
		if !atFirstHit.Load() {
			operand, ok = CondDroppedAt(bi, pc, cond)
		}
		if !ok {
			if undecided == nil {
				undecided = make(map[uint64]bool)
			}
			undecided[pc] = true
			continue
		}
		if operand != "" {
			file, line, _ := bi.PCToLine(pc)
			return nil, &DroppedConditionError{Operand: operand, File: file, Line: line}
		}
	}
	return undecided, nil
}

// atFirstHit leaves every PC to its first hit, in tests of that path.
var atFirstHit atomic.Bool

// DecideAtFirstHit makes DroppedInCondition leave every PC undecided, so
// that tests exercise the decision at a hit, which only inlined calls need.
func DecideAtFirstHit(on bool) { atFirstHit.Store(on) }

// CondDroppedInScope is CondDropped in the scope of a hit: a
// *DroppedConditionError if cond reads a part left out there.
func CondDroppedInScope(scope *proc.EvalScope, cond string) error {
	operand := CondDropped(cond, func(name string) (*proc.Variable, error) {
		return scope.EvalExpression(name, proc.LoadConfig{})
	})
	if operand == "" {
		return nil
	}
	return &DroppedConditionError{Operand: operand, File: scope.File, Line: scope.Line}
}
