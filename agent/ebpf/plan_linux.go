package ebpf

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/go-delve/delve/pkg/dwarf/reader"
	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// The plan layout shared with probe.c.
const (
	maxOps    = 64
	maxRead   = 0xfff // bytes one op copies at most
	maxFrames = 32

	srcNone   = 0
	srcReg    = 1
	srcStack  = 2
	srcOp     = 3
	srcSPAddr = 4

	regR14 = 1 // index of R14 in struct pt_regs
)

type bpfSrc struct {
	Kind uint8
	Reg  uint8
	Op   uint8
	_    uint8
	Off  int32
}

type bpfOp struct {
	Ptr  bpfSrc
	Len  bpfSrc
	Elem uint32
	Max  uint32
}

// Condition operators of struct cond.
const (
	condNone = iota
	condEQ
	condNE
	condLT
	condLE
	condGT
	condGE
)

type bpfCond struct {
	Var    bpfSrc
	Op     uint8
	Size   uint8
	Signed uint8
	_      [5]uint8
	Value  int64
}

type bpfPlan struct {
	Bucket uint32
	Frames uint32
	NOps   uint32
	_      uint32
	Cond   bpfCond
	Ops    [maxOps]bpfOp
}

type bpfBucket struct {
	Rate    uint64
	TAT     uint64
	Dropped uint64
	Full    uint64 // of Dropped, those the full ring buffer refused
	Disarm  uint64 // not 0: report the allowance spent in the spent ring buffer
	Spent   uint64 // when it was spent (monotonic ns) in this arming; 0: not yet
	Wasted  uint64 // hits refused since then, each a trap for nothing
	Seen    uint64 // hits that met the bucket in this arming, taken or not
	First   uint64 // when the first hit of this arming met it (monotonic ns); 0: none yet
	Nested  uint64 // of Dropped, those that found their CPU's scratch busy (probe.c's capture)
}

// ptRegs maps amd64 DWARF register numbers to their index in struct pt_regs.
var ptRegs = map[uint64]uint8{0: 10, 1: 12, 2: 11, 3: 5, 4: 13, 5: 14, 6: 4, 7: 19, 8: 9, 9: 8, 10: 7, 11: 6, 12: 3, 13: 2, 14: 1, 15: 0}

// debugInfo is what planning needs beyond Delve's binary info: the DWARF
// data itself, the function entries' offsets in it, and the frame table.
type debugInfo struct {
	dw     *dwarf.Data
	funcs  map[uint64]dwarf.Offset // subprogram DIE by low PC
	frames frame.FrameDescriptionEntries
}

func loadDebugInfo(exe string, staticBase uint64) (*debugInfo, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dw, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("reading DWARF: %w", err)
	}
	sec := f.Section(".debug_frame")
	if sec == nil {
		return nil, fmt.Errorf("%s has no .debug_frame: build it without -ldflags=-w", exe)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .debug_frame: %w", err)
	}
	fdes, err := frame.Parse(data, binary.LittleEndian, staticBase, 8, 0)
	if err != nil {
		return nil, fmt.Errorf("parsing .debug_frame: %w", err)
	}
	di := &debugInfo{dw: dw, funcs: make(map[uint64]dwarf.Offset), frames: fdes}
	r := dw.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("reading DWARF: %w", err)
		}
		if e == nil {
			break
		}
		switch e.Tag {
		case dwarf.TagCompileUnit:
			continue
		case dwarf.TagSubprogram:
			if lo, ok := e.Val(dwarf.AttrLowpc).(uint64); ok {
				di.funcs[lo+staticBase] = e.Offset
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	return di, nil
}

// planner builds the capture plan of one PC.
type planner struct {
	bi      *proc.BinaryInfo
	di      *debugInfo
	capture fleet.Capture
	cond    string // the tracepoint's condition, compiled if it is simple
	ops     []bpfOp
	window  int64 // bytes of the frame from SP that variables occupy
	full    bool  // ops ran out: some values will read as not captured
	queue   []pointee
}

// pointee is a value to plan once the values before it are.
type pointee struct {
	l     loc
	t     godwarf.Type
	depth int
}

// loc is where a value's bytes are at the probed PC.
type loc struct {
	kind   int // srcStack (SP-relative), srcOp (in the bytes op copied), or srcReg (pieces)
	off    int64
	op     int
	pieces []op.Piece
	spBase int64 // the SP the pieces' addresses were computed with
}

func (l loc) plus(o int64) loc {
	l.off += o
	return l
}

// word says where the 8-byte word at offset o of the value is.
func (l loc) word(o int64) (bpfSrc, bool) {
	switch l.kind {
	case srcStack:
		return bpfSrc{Kind: srcStack, Off: int32(l.off + o)}, true
	case srcOp:
		return bpfSrc{Kind: srcOp, Op: uint8(l.op), Off: int32(l.off + o)}, true
	}
	at := int64(0)
	o += l.off
	if len(l.pieces) == 1 && l.pieces[0].Size == 0 && l.pieces[0].Kind == op.RegPiece {
		// A value wholly in one register: its first word.
		if r, ok := ptRegs[l.pieces[0].Val]; ok && o == 0 {
			return bpfSrc{Kind: srcReg, Reg: r}, true
		}
		return bpfSrc{}, false
	}
	for _, p := range l.pieces {
		if o >= at && o+8 <= at+int64(p.Size) {
			switch p.Kind {
			case op.RegPiece:
				if r, ok := ptRegs[p.Val]; ok && o == at && p.Size == 8 {
					return bpfSrc{Kind: srcReg, Reg: r}, true
				}
			case op.AddrPiece:
				return bpfSrc{Kind: srcStack, Off: int32(int64(p.Val) - l.spBase + (o - at))}, true
			}
			return bpfSrc{}, false
		}
		at += int64(p.Size)
	}
	return bpfSrc{}, false
}

// add appends an op and returns its index, or -1 when the plan is full.
func (pl *planner) add(o bpfOp) int {
	if len(pl.ops) == maxOps {
		pl.full = true
		return -1
	}
	if o.Max > maxRead {
		o.Max = maxRead
	}
	pl.ops = append(pl.ops, o)
	return len(pl.ops) - 1
}

// plan returns the plan for pc; bucket and frames are filled by the caller.
func (pl *planner) plan(pc uint64, line int) (bpfPlan, error) {
	fde, err := pl.di.frames.FDEForPC(pc)
	if err != nil {
		return bpfPlan{}, fmt.Errorf("no frame information for pc %#x: %w", pc, err)
	}
	fctx, err := fde.EstablishFrame(pc)
	if err != nil {
		return bpfPlan{}, fmt.Errorf("reading the frame at pc %#x: %w", pc, err)
	}
	if fctx.CFA.Rule != frame.RuleCFA || fctx.CFA.Reg != 7 {
		return bpfPlan{}, fmt.Errorf("the frame at pc %#x is not SP-based", pc)
	}
	cfaOff := fctx.CFA.Offset
	pl.window = cfaOff

	// The goroutine, then the frame, then what variables point to.
	gsize := int64(512)
	if gt, err := pl.bi.FindType("runtime.g"); err == nil {
		gsize = gt.Size()
	}
	pl.add(bpfOp{Ptr: bpfSrc{Kind: srcReg, Reg: regR14}, Max: uint32(gsize)})

	fn := pl.bi.PCToFunc(pc)
	if fn == nil {
		return bpfPlan{}, fmt.Errorf("no function at pc %#x", pc)
	}
	off, ok := pl.di.funcs[fn.Entry]
	if !ok {
		return bpfPlan{}, fmt.Errorf("no DWARF entry for %s", fn.Name)
	}
	tree, err := godwarf.LoadTree(off, pl.di.dw, pl.bi.Images[0].StaticBase)
	if err != nil {
		return bpfPlan{}, fmt.Errorf("reading the DWARF of %s: %w", fn.Name, err)
	}
	const spBase = 1 << 40
	regs := op.NewDwarfRegisters(0, nil, binary.LittleEndian, 16, 7, 6, 0)
	regs.CFA = spBase + cfaOff
	regs.FrameBase = regs.CFA
	regs.AddReg(7, op.DwarfRegisterFromUint64(spBase))
	image := pl.bi.Images[0]
	vars := reader.Variables(tree, pc, line, reader.VariablesOnlyVisible)
	// Direct storage first, so that the window covers it before pointers
	// use up the ops.
	type planned struct {
		l loc
		t godwarf.Type
	}
	var todo []planned
	byName := make(map[string]planned)
	for _, v := range vars {
		toff, ok := v.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok {
			continue
		}
		typ, err := image.Type(toff)
		if err != nil {
			continue
		}
		addr, pieces, _, err := pl.bi.Location(v.Tree, dwarf.AttrLocation, pc, *regs, nil)
		if err != nil {
			continue
		}
		var l loc
		if len(pieces) == 0 {
			l = loc{kind: srcStack, off: addr - spBase}
			if l.off < 0 || l.off > 1<<16 {
				continue
			}
			if end := l.off + typ.Size(); end > pl.window {
				pl.window = end
			}
		} else {
			l = loc{kind: srcReg, pieces: pieces, spBase: spBase}
			for _, p := range pieces {
				if p.Kind == op.AddrPiece {
					if end := int64(p.Val) - spBase + int64(p.Size); end > pl.window && end < 1<<16 {
						pl.window = end
					}
				}
			}
		}
		todo = append(todo, planned{l, typ})
		name, _ := v.Val(dwarf.AttrName).(string)
		if _, dup := byName[name]; dup {
			byName[name] = planned{} // shadowed: which one the condition means is Delve's to say
		} else {
			byName[name] = planned{l, typ}
		}
	}
	const maxWindow = 4 * maxRead
	for off := int64(0); off < min(pl.window, maxWindow); off += maxRead {
		pl.add(bpfOp{Ptr: bpfSrc{Kind: srcSPAddr, Off: int32(off)}, Max: uint32(min(pl.window-off, maxRead))})
	}
	// Breadth first: what the variables point to directly, for all of
	// them, before what those point to, so that running out of ops costs
	// the deepest values.
	for _, p := range todo {
		pl.value(p.l, p.t, 0)
	}
	for len(pl.queue) > 0 && !pl.full {
		w := pl.queue[0]
		pl.queue = pl.queue[1:]
		pl.value(w.l, w.t, w.depth)
	}
	var bp bpfPlan
	if pl.cond != "" {
		bp.Cond = compileCond(pl.cond, func(name string) (loc, godwarf.Type, bool) {
			p, ok := byName[name]
			return p.l, p.t, ok && p.t != nil
		})
	}
	bp.NOps = uint32(len(pl.ops))
	copy(bp.Ops[:], pl.ops)
	return bp, nil
}

// value adds the ops that copy what the value at l of type t points to,
// following pointers up to the capture's struct depth.
func (pl *planner) value(l loc, t godwarf.Type, depth int) {
	maxDepth := pl.capture.MaxDepth
	if maxDepth <= 0 {
		maxDepth = fleet.DefaultCapture.MaxDepth
	}
	maxString := pl.capture.MaxString
	if maxString <= 0 {
		maxString = fleet.DefaultCapture.MaxString
	}
	maxArray := pl.capture.MaxArray
	if maxArray <= 0 {
		maxArray = fleet.DefaultCapture.MaxArray
	}
	if depth > maxDepth {
		return
	}
	t = godwarf.ResolveTypedef(t)
	switch t := t.(type) {
	case *godwarf.StringType:
		ptr, ok1 := l.word(0)
		n, ok2 := l.word(8)
		if ok1 && ok2 {
			pl.add(bpfOp{Ptr: ptr, Len: n, Elem: 1, Max: uint32(maxString)})
		}
	case *godwarf.SliceType:
		ptr, ok1 := l.word(0)
		n, ok2 := l.word(8)
		elem := t.ElemType.Size()
		if !ok1 || !ok2 || elem <= 0 {
			return
		}
		k := pl.add(bpfOp{Ptr: ptr, Len: n, Elem: uint32(elem), Max: uint32(min(int64(maxArray)*elem, maxRead))})
		if k < 0 {
			return
		}
		for i := 0; i < maxArray && int64(i+1)*elem <= maxRead; i++ {
			if !pl.hasPointers(t.ElemType) {
				break
			}
			pl.queue = append(pl.queue, pointee{loc{kind: srcOp, op: k, off: int64(i) * elem}, t.ElemType, depth + 1})
		}
	case *godwarf.PtrType:
		ptr, ok := l.word(0)
		size := godwarf.ResolveTypedef(t.Type).Size()
		if !ok || size <= 0 {
			return
		}
		k := pl.add(bpfOp{Ptr: ptr, Max: uint32(min(size, maxRead))})
		if k >= 0 {
			pl.queue = append(pl.queue, pointee{loc{kind: srcOp, op: k}, t.Type, depth + 1})
		}
	case *godwarf.StructType:
		for _, f := range t.Field {
			pl.value(l.plus(f.ByteOffset), f.Type, depth)
		}
	case *godwarf.ArrayType:
		elem := t.Type.Size()
		if elem <= 0 || !pl.hasPointers(t.Type) {
			return
		}
		for i := int64(0); i < t.Count && i < int64(maxArray); i++ {
			pl.value(l.plus(i*elem), t.Type, depth)
		}
	case *godwarf.InterfaceType:
		// The type word (an itab or a type, usually in read-only data,
		// but made at run time for some conversions), then the data, and
		// a string at the start of the data, which is where the common
		// error types keep their message. What the dynamic type really is
		// decides what the decoder reads; a guess here only costs a copy.
		if tab, ok := l.word(0); ok {
			pl.add(bpfOp{Ptr: tab, Max: 32})
		}
		data, ok := l.word(8)
		if !ok {
			return
		}
		k := pl.add(bpfOp{Ptr: data, Max: ifaceData})
		if k >= 0 && depth+1 <= maxDepth {
			pl.add(bpfOp{Ptr: bpfSrc{Kind: srcOp, Op: uint8(k)}, Len: bpfSrc{Kind: srcOp, Op: uint8(k), Off: 8}, Elem: 1, Max: uint32(maxString)})
		}
	}
}

// ifaceData is how much of an interface's data the plan copies, not knowing
// its type. A larger dynamic value (a context's *cancelCtx is 80 bytes) reads
// as not captured as a whole, since Delve reads a struct through one cache
// of all its bytes; copying more for every interface of every hit would
// fill the ring buffer sooner in a burst (TestExitDrains).
const ifaceData = 64

// hasPointers reports whether values of t lead to memory worth copying.
func (pl *planner) hasPointers(t godwarf.Type) bool {
	switch t := godwarf.ResolveTypedef(t).(type) {
	case *godwarf.StringType, *godwarf.SliceType, *godwarf.PtrType, *godwarf.InterfaceType:
		return true
	case *godwarf.StructType:
		for _, f := range t.Field {
			if pl.hasPointers(f.Type) {
				return true
			}
		}
	case *godwarf.ArrayType:
		return pl.hasPointers(t.Type)
	}
	return false
}

// compileCond compiles a condition of the form `v OP constant` (or
// `constant OP v`), v an integer variable, for the BPF program; anything
// else gives a cond with op condNone, left to the agent.
func compileCond(cond string, lookup func(string) (loc, godwarf.Type, bool)) bpfCond {
	e, err := parser.ParseExpr(cond)
	if err != nil {
		return bpfCond{}
	}
	for {
		p, ok := e.(*ast.ParenExpr)
		if !ok {
			break
		}
		e = p.X
	}
	be, ok := e.(*ast.BinaryExpr)
	if !ok {
		return bpfCond{}
	}
	ops := map[token.Token]uint8{token.EQL: condEQ, token.NEQ: condNE, token.LSS: condLT, token.LEQ: condLE, token.GTR: condGT, token.GEQ: condGE}
	flip := map[uint8]uint8{condEQ: condEQ, condNE: condNE, condLT: condGT, condLE: condGE, condGT: condLT, condGE: condLE}
	op, ok := ops[be.Op]
	if !ok {
		return bpfCond{}
	}
	id, lit := be.X, be.Y
	if _, isIdent := id.(*ast.Ident); !isIdent {
		id, lit, op = be.Y, be.X, flip[op]
	}
	name, ok := id.(*ast.Ident)
	if !ok {
		return bpfCond{}
	}
	value, ok := intConst(lit)
	if !ok {
		return bpfCond{}
	}
	l, t, ok := lookup(name.Name)
	if !ok {
		return bpfCond{}
	}
	var signed uint8
	switch godwarf.ResolveTypedef(t).(type) {
	case *godwarf.IntType:
		signed = 1
	case *godwarf.UintType:
		if value < 0 {
			return bpfCond{}
		}
	default:
		return bpfCond{}
	}
	size := t.Size()
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return bpfCond{}
	}
	src, ok := l.scalar(size)
	if !ok {
		return bpfCond{}
	}
	return bpfCond{Var: src, Op: op, Size: uint8(size), Signed: signed, Value: value}
}

// intConst reads an integer literal, possibly negated.
func intConst(e ast.Expr) (int64, bool) {
	neg := false
	if u, ok := e.(*ast.UnaryExpr); ok && (u.Op == token.SUB || u.Op == token.ADD) {
		neg = u.Op == token.SUB
		e = u.X
	}
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.INT {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(lit.Value, "_", ""), 0, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// scalar says where a value of size bytes at the start of l is, for a
// condition: like word, but a register piece may be narrower than 8 bytes.
func (l loc) scalar(size int64) (bpfSrc, bool) {
	if l.kind != srcReg {
		return l.word(0)
	}
	if l.off != 0 || len(l.pieces) == 0 {
		return bpfSrc{}, false
	}
	p := l.pieces[0]
	switch {
	case p.Kind == op.RegPiece && (int64(p.Size) == size || p.Size == 0 && len(l.pieces) == 1):
		if r, ok := ptRegs[p.Val]; ok {
			return bpfSrc{Kind: srcReg, Reg: r}, true
		}
	case p.Kind == op.AddrPiece && int64(p.Size) >= size:
		return bpfSrc{Kind: srcStack, Off: int32(int64(p.Val) - l.spBase)}, true
	}
	return bpfSrc{}, false
}

// DWARF register numbers of amd64's XMM0 to XMM15: a float or complex
// value kept there at a PC is out of a uprobe's reach, which sees only the
// general registers (struct pt_regs).
const (
	dwarfXMM0  = 17
	dwarfXMM15 = 32
)

// neededNames returns the variables a spec's condition, log message and
// expressions read, each with what reads it: the values a hit cannot do
// without, unlike arguments and locals, which a hit shows as not captured
// when they are out of reach.
func neededNames(spec fleet.Spec) map[string]string {
	out := make(map[string]string)
	add := func(expr, what string) {
		e, err := parser.ParseExpr(expr)
		if err != nil {
			return
		}
		ast.Inspect(e, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				ast.Inspect(n.X, func(m ast.Node) bool {
					if id, ok := m.(*ast.Ident); ok {
						if _, seen := out[id.Name]; !seen {
							out[id.Name] = what
						}
					}
					return true
				})
				return false // the selected field is no variable
			case *ast.Ident:
				if _, seen := out[n.Name]; !seen {
					out[n.Name] = what
				}
			}
			return true
		})
	}
	if spec.Condition != "" {
		add(spec.Condition, "the condition")
	}
	if segs, err := fleet.ParseLogMessage(spec.LogMessage); err == nil {
		for _, s := range segs {
			if s.Expr != "" {
				add(s.Expr, "the log message")
			}
		}
	}
	for _, e := range spec.Capture.Exprs {
		add(e, "the expression "+strconv.Quote(e))
	}
	return out
}

// Unreadable says why this backend cannot give spec, at its line in this
// process, a value its condition, log message or expressions need: the
// variable is in a floating-point register at every PC of the line a probe
// could take (see siteFor), which a uprobe cannot read. "" when it can, or
// when that cannot be told here (Set then says what is wrong). Backend auto
// serves such a spec with Delve, which reads every register.
func (t *target) Unreadable(spec agent.Tracepoint) string {
	needed := neededNames(spec)
	if len(needed) == 0 {
		return ""
	}
	t.mu.Lock()
	defer t.unlock()
	if t.ended || t.exitErr != nil {
		return ""
	}
	file, err := agent.ResolveFile(t.snap.BinInfo().Sources, spec.Location)
	if err != nil {
		return ""
	}
	pcs, err := proc.FindFileLocation(t.snap, file, spec.Location.Line)
	if err != nil {
		return ""
	}
	for _, pc := range pcs {
		s := t.siteFor(pc, file, spec.Location.Line, needed)
		for _, name := range sortedNames(s.fp) {
			return fmt.Sprintf("%s needs %s (%s), which is in a floating-point register at every address of %s:%d a probe could take; a uprobe cannot read it", needed[name], name, s.fp[name], filepath.Base(file), spec.Location.Line)
		}
	}
	return ""
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
