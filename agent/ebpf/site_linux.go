package ebpf

// Where in a line the probe goes. A uprobe sees the general registers and
// the memory it copies, not the floating-point ones, so a float64 kept in
// an XMM register at the line's first instruction reads as not captured
// there. A few instructions later, still in the line, the compiler may have
// left it only on the stack: a probe there reads it. Moving the probe is
// safe only if it still fires once for each run of the line and shows the
// values the line started with, so a later address is a candidate only
// when both are proved from the machine code (see siteFor).

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/go-delve/delve/pkg/dwarf/reader"
	"github.com/go-delve/delve/pkg/proc"
	"golang.org/x/arch/x86/x86asm"
)

// site is where the probe for one of a line's first PCs goes, and what it
// can read there.
type site struct {
	first uint64 // the line's first PC, in one function or inlined copy
	pc    uint64 // the probed PC: first, or a later one of the same line
	// fp names the variables that the spec needs and that are in a
	// floating-point register at pc, with their types.
	fp map[string]string
	// gained names the variables readable at pc that were in a
	// floating-point register at first, when pc is not first.
	gained []string
}

// siteFor chooses the probe's PC for the line's first PC first: the PC, of
// those a probe may take instead, where the most variables the spec needs
// (needed) are readable by a uprobe, then the most of all, and the
// earliest of equals, which keeps first unless moving gains something.
//
// A later PC c may take the probe only if it runs exactly when first does
// and every value readable at c is the one the line started with:
//
//   - c lies in the straight run of instructions from first: none between
//     them transfers control (a jump, a call, a return), none of them is
//     the target of a branch in the function (a function with an indirect
//     jump, whose targets are unknown, keeps every probe at first), and
//     every instruction from first to c belongs to the line. So c runs
//     once each time first does, on every path, and never otherwise.
//   - none of the instructions between them stores to memory other than
//     the frame, nor moves the stack pointer; and every store to the frame
//     writes only bytes that hold, at c, a value proved unchanged below.
//     So what pointers lead to is as it was at first.
//   - each variable readable at c holds, at c, bytes proved equal to those
//     it held at first: a symbolic run of the instructions from the start
//     of the straight run (which may begin before first, where the value
//     was spilled) tracks which register and frame bytes still hold which
//     original bytes; a copy moves them, any other write forgets them.
//     A variable the line gave a new value before c fails this and keeps
//     c from taking the probe.
//
// Anything the analysis does not model (an instruction it does not know,
// a location it cannot read) keeps the probe at first.
func (t *target) siteFor(first uint64, file string, line int, needed map[string]string) site {
	s := site{first: first, pc: first}
	bi := t.snap.BinInfo()
	at := func(pc uint64) (*frameVars, bool) {
		fv, err := varsAt(bi, t.di, pc, line)
		return fv, err == nil
	}
	fv0, ok := at(first)
	if !ok {
		return s
	}
	s.fp = fv0.fpNeeded(needed)
	if len(fv0.fp) == 0 {
		return s // nothing to gain: every value a uprobe could read is readable here
	}
	run, err := t.straightRun(first, file, line)
	if err != nil || len(run.insns) <= run.first+1 {
		return s
	}
	st := newSymState()
	var at0 map[int]cellVal // each variable's bytes at first
	best := fv0.score(needed)
	var stores []stackRange
	for i, in := range run.insns {
		if i == run.first {
			at0 = make(map[int]cellVal, len(fv0.vars))
			for k, v := range fv0.vars {
				at0[k] = st.read(v.cells)
			}
		}
		if i > run.first {
			pc := run.pcs[i]
			fv, ok := at(pc)
			if ok && fv.inlined != fv0.inlined {
				// Another inlined copy of the same line follows this one:
				// its own probe serves it.
				break
			}
			if ok && fv.provedAgainst(fv0, at0, st, stores) {
				if sc := fv.score(needed); sc.better(best) {
					best, s.pc = sc, pc
					s.fp = fv.fpNeeded(needed)
					s.gained = nil
					for name := range fv0.fp {
						if !fv0.readable[name] && fv.readable[name] {
							s.gained = append(s.gained, name)
						}
					}
					slices.Sort(s.gained)
				}
			}
		}
		if i == len(run.insns)-1 {
			break // the last PC is a candidate, not an instruction to run
		}
		if i >= run.first {
			if r, ok := frameStore(in); ok {
				stores = append(stores, r)
			}
		}
		st.step(in)
	}
	return s
}

// run is a straight run of instructions: insns[first] is at the line's
// first PC; those before it lead to it with no branch between, and those
// after it are of the line, the last one possibly a control transfer that
// the probe would precede.
type run struct {
	insns []x86asm.Inst
	pcs   []uint64
	first int
}

// straightRun decodes the function of first from the executable and
// returns the straight run through first (see siteFor).
func (t *target) straightRun(first uint64, file string, line int) (run, error) {
	bi := t.snap.BinInfo()
	fn := bi.PCToFunc(first)
	if fn == nil {
		return run{}, fmt.Errorf("no function at pc %#x", first)
	}
	code, err := readText(t.exe, fn.Entry-bi.Images[0].StaticBase, int(fn.End-fn.Entry))
	if err != nil {
		return run{}, err
	}
	var insns []x86asm.Inst
	var pcs []uint64
	targets := make(map[uint64]bool)
	for off := 0; off < len(code); {
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return run{}, fmt.Errorf("decoding %s at %#x: %w", fn.Name, fn.Entry+uint64(off), err)
		}
		pc := fn.Entry + uint64(off)
		if isJump(in.Op) {
			rel, ok := in.Args[0].(x86asm.Rel)
			if !ok {
				return run{}, fmt.Errorf("%s has an indirect jump at %#x", fn.Name, pc)
			}
			targets[uint64(int64(pc)+int64(in.Len)+int64(rel))] = true
		}
		insns = append(insns, in)
		pcs = append(pcs, pc)
		off += in.Len
	}
	i := slices.Index(pcs, first)
	if i < 0 {
		return run{}, fmt.Errorf("pc %#x is not an instruction of %s", first, fn.Name)
	}
	lo := i
	for lo > 0 && !targets[pcs[lo]] && plain(insns[lo-1]) && frameOnly(insns[lo-1]) {
		lo--
	}
	hi := i
	for hi+1 < len(insns) && !targets[pcs[hi+1]] && plain(insns[hi]) && frameOnly(insns[hi]) {
		f, l, _ := bi.PCToLine(pcs[hi+1])
		if f != file || l != line {
			break
		}
		if next := insns[hi+1]; next.Op == x86asm.CALL {
			// A recovered panic resumes at the call of
			// runtime.deferreturn, without running what precedes it.
			if rel, ok := next.Args[0].(x86asm.Rel); ok {
				callee := bi.PCToFunc(uint64(int64(pcs[hi+1]) + int64(next.Len) + int64(rel)))
				if callee == nil || callee.Name == "runtime.deferreturn" {
					break
				}
			}
		}
		hi++
	}
	return run{insns: insns[lo : hi+1], pcs: pcs[lo : hi+1], first: i - lo}, nil
}

// readText reads n bytes of the executable at virtual address addr, from
// the file: the process's own text may carry probes' breakpoints.
func readText(exe string, addr uint64, n int) ([]byte, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr+uint64(n) <= p.Vaddr+p.Filesz {
			buf := make([]byte, n)
			if _, err := io.ReadFull(io.NewSectionReader(p, int64(addr-p.Vaddr), int64(n)), buf); err != nil {
				return nil, fmt.Errorf("reading the code at %#x: %w", addr, err)
			}
			return buf, nil
		}
	}
	return nil, fmt.Errorf("no code at %#x in %s", addr, exe)
}

func isJump(o x86asm.Op) bool {
	switch o {
	case x86asm.JMP, x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JNE,
		x86asm.JG, x86asm.JGE, x86asm.JL, x86asm.JLE, x86asm.JO, x86asm.JNO, x86asm.JP,
		x86asm.JNP, x86asm.JS, x86asm.JNS, x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ,
		x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		return true
	}
	return false
}

// Instruction kinds the symbolic run knows.
const (
	kindOther = iota // unknown: ends a run
	kindCopy         // dest = src, for the width of the move
	kindWrite        // dest gets a new value
	kindNone         // writes no register or memory (flags aside)
)

// kind says what in does to its first argument.
func kind(in x86asm.Inst) int {
	switch in.Op {
	case x86asm.MOV, x86asm.MOVQ, x86asm.MOVD, x86asm.MOVSD_XMM, x86asm.MOVSS,
		x86asm.MOVUPS, x86asm.MOVAPS, x86asm.MOVUPD, x86asm.MOVAPD, x86asm.MOVDQU, x86asm.MOVDQA:
		return kindCopy
	case x86asm.ADD, x86asm.SUB, x86asm.AND, x86asm.OR, x86asm.XOR, x86asm.INC, x86asm.DEC,
		x86asm.NEG, x86asm.NOT, x86asm.SHL, x86asm.SHR, x86asm.SAR, x86asm.ROL, x86asm.ROR,
		x86asm.LEA, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD, x86asm.ADC, x86asm.SBB,
		x86asm.CMOVA, x86asm.CMOVAE, x86asm.CMOVB, x86asm.CMOVBE, x86asm.CMOVE, x86asm.CMOVNE,
		x86asm.CMOVG, x86asm.CMOVGE, x86asm.CMOVL, x86asm.CMOVLE, x86asm.CMOVS, x86asm.CMOVNS,
		x86asm.SETA, x86asm.SETAE, x86asm.SETB, x86asm.SETBE, x86asm.SETE, x86asm.SETNE,
		x86asm.SETG, x86asm.SETGE, x86asm.SETL, x86asm.SETLE, x86asm.SETP, x86asm.SETNP,
		x86asm.ADDSD, x86asm.SUBSD, x86asm.MULSD, x86asm.DIVSD, x86asm.SQRTSD, x86asm.MINSD, x86asm.MAXSD,
		x86asm.ADDSS, x86asm.SUBSS, x86asm.MULSS, x86asm.DIVSS,
		x86asm.XORPS, x86asm.XORPD, x86asm.ANDPS, x86asm.ANDPD, x86asm.ANDNPS, x86asm.ANDNPD,
		x86asm.ORPS, x86asm.ORPD, x86asm.PXOR, x86asm.CVTSI2SD, x86asm.CVTSI2SS, x86asm.CVTTSD2SI,
		x86asm.CVTSD2SS, x86asm.CVTSS2SD, x86asm.CVTTSS2SI, x86asm.ROUNDSD, x86asm.UNPCKLPD, x86asm.PUNPCKLQDQ:
		if in.Args[0] == nil {
			return kindOther
		}
		return kindWrite
	case x86asm.IMUL:
		if in.Args[1] == nil {
			return kindOther // the one-operand form writes RDX:RAX
		}
		return kindWrite
	case x86asm.CMP, x86asm.TEST, x86asm.UCOMISD, x86asm.UCOMISS, x86asm.COMISD, x86asm.COMISS,
		x86asm.NOP, x86asm.BT:
		return kindNone
	}
	return kindOther
}

// plain reports whether control always goes from in to the next
// instruction, the stack pointer stays, and the symbolic run knows in.
func plain(in x86asm.Inst) bool {
	k := kind(in)
	if k == kindOther {
		return false
	}
	if k == kindNone {
		return true
	}
	if r, ok := in.Args[0].(x86asm.Reg); ok {
		if f, _, _, ok := regBytes(r); !ok || f == famSP {
			return false
		}
	}
	return true
}

// frameOnly reports whether in stores to no memory but the frame, at an
// offset from the stack pointer.
func frameOnly(in x86asm.Inst) bool {
	if kind(in) == kindNone {
		return true
	}
	m, ok := in.Args[0].(x86asm.Mem)
	if !ok {
		return true
	}
	_, ok = spOffset(m)
	return ok && in.MemBytes > 0
}

type stackRange struct{ off, n int64 }

// frameStore returns the frame bytes in stores to, if it stores.
func frameStore(in x86asm.Inst) (stackRange, bool) {
	if kind(in) == kindNone {
		return stackRange{}, false
	}
	m, ok := in.Args[0].(x86asm.Mem)
	if !ok {
		return stackRange{}, false
	}
	off, _ := spOffset(m)
	return stackRange{off, int64(in.MemBytes)}, true
}

func spOffset(m x86asm.Mem) (int64, bool) {
	if m.Base != x86asm.RSP || m.Index != 0 || m.Segment != 0 {
		return 0, false
	}
	return m.Disp, true
}

// Register families of the symbolic run: 0-15 the general registers in
// x86asm's order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15), 16-31
// XMM0 to XMM15.
const (
	famSP   = 4
	famXMM0 = 16
)

// regBytes says which bytes of which family r names.
func regBytes(r x86asm.Reg) (fam, off, n int, ok bool) {
	switch {
	case r >= x86asm.AL && r <= x86asm.BL:
		return int(r - x86asm.AL), 0, 1, true
	case r >= x86asm.AH && r <= x86asm.BH:
		return int(r - x86asm.AH), 1, 1, true
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return int(r-x86asm.SPB) + 4, 0, 1, true
	case r >= x86asm.AX && r <= x86asm.R15W:
		return int(r - x86asm.AX), 0, 2, true
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return int(r - x86asm.EAX), 0, 4, true
	case r >= x86asm.RAX && r <= x86asm.R15:
		return int(r - x86asm.RAX), 0, 8, true
	case r >= x86asm.X0 && r <= x86asm.X15:
		return famXMM0 + int(r-x86asm.X0), 0, 16, true
	}
	return 0, 0, 0, false
}

// dwarfFamily maps amd64 DWARF register numbers to register families.
func dwarfFamily(n uint64) (int, bool) {
	switch {
	case n <= 15:
		return []int{0, 2, 1, 3, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15}[n], true
	case n >= dwarfXMM0 && n <= dwarfXMM15:
		return famXMM0 + int(n-dwarfXMM0), true
	}
	return 0, false
}

// cell is one byte of storage: of a register family, or of the frame at an
// offset from the stack pointer.
type cell struct {
	reg   int // family, or -1 for the frame
	off   int64
	imm   bool // a constant byte of a DWARF location, val
	val   byte
	unset bool // no storage: optimized away
}

// origin is what a byte held at the start of the symbolic run: the byte of
// the cell it names; the zero origin is unknown.
type origin struct {
	known bool
	c     cell
}

type cellVal []origin

func (a cellVal) equal(b cellVal) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].known || a[i] != b[i] {
			return false
		}
	}
	return true
}

// symState is the symbolic run's knowledge: the origin of each byte
// written since it began; a byte not written holds its own.
type symState struct {
	bytes map[cell]origin
}

func newSymState() *symState { return &symState{bytes: make(map[cell]origin)} }

func (s *symState) get(c cell) origin {
	if c.imm {
		return origin{known: true, c: c}
	}
	if c.unset {
		return origin{}
	}
	if t, ok := s.bytes[c]; ok {
		return t
	}
	return origin{known: true, c: c}
}

func (s *symState) read(cs []cell) cellVal {
	v := make(cellVal, len(cs))
	for i, c := range cs {
		v[i] = s.get(c)
	}
	return v
}

// operand returns the cells of an argument n bytes wide, or nil for an
// immediate or memory the run does not track.
func operand(a x86asm.Arg, n int) []cell {
	switch a := a.(type) {
	case x86asm.Reg:
		f, off, w, ok := regBytes(a)
		if !ok {
			return nil
		}
		n = min(n, w)
		cs := make([]cell, n)
		for i := range cs {
			cs[i] = cell{reg: f, off: int64(off + i)}
		}
		return cs
	case x86asm.Mem:
		o, ok := spOffset(a)
		if !ok {
			return nil
		}
		cs := make([]cell, n)
		for i := range cs {
			cs[i] = cell{reg: -1, off: o + int64(i)}
		}
		return cs
	}
	return nil
}

// width returns the bytes an argument of in covers.
func width(in x86asm.Inst, a x86asm.Arg) int {
	if r, ok := a.(x86asm.Reg); ok {
		_, _, n, _ := regBytes(r)
		return n
	}
	if in.MemBytes > 0 {
		return in.MemBytes
	}
	return 16
}

// step runs in symbolically; in is plain.
func (s *symState) step(in x86asm.Inst) {
	switch kind(in) {
	case kindNone:
		return
	case kindCopy:
		dst, src := in.Args[0], in.Args[1]
		n := width(in, dst)
		if w := width(in, src); w < n {
			n = w
		}
		switch in.Op {
		case x86asm.MOVSD_XMM, x86asm.MOVQ:
			n = 8
		case x86asm.MOVSS, x86asm.MOVD:
			n = 4
		}
		from := operand(src, n)
		to := operand(dst, n)
		vals := make([]origin, len(to))
		if len(from) == len(to) {
			for i, c := range from {
				vals[i] = s.get(c)
			}
		}
		// The bytes of the destination register not copied become
		// unknown, even where the move keeps them (MOVSD between
		// registers): unknown only ever keeps a probe where it is.
		s.forget(in, dst)
		for i, c := range to {
			s.bytes[c] = vals[i]
		}
	case kindWrite:
		s.forget(in, in.Args[0])
	}
}

// forget makes the bytes a write to a reaches unknown: a register's whole
// family (a 32-bit write zeroes the upper half, a vector one may), or the
// frame bytes written.
func (s *symState) forget(in x86asm.Inst, a x86asm.Arg) {
	switch a := a.(type) {
	case x86asm.Reg:
		f, _, _, _ := regBytes(a)
		n := 8
		if f >= famXMM0 {
			n = 16
		}
		for i := range n {
			s.bytes[cell{reg: f, off: int64(i)}] = origin{}
		}
	case x86asm.Mem:
		for _, c := range operand(a, width(in, a)) {
			s.bytes[c] = origin{}
		}
	}
}

// frameVars is where the variables visible at a PC of the line are.
type frameVars struct {
	inlined  dwarf.Offset   // the innermost inlined call, or function, of the PC
	vars     map[int]varLoc // by DWARF offset
	fp       map[string]string
	readable map[string]bool
	bad      bool // a variable is somewhere the analysis cannot follow
}

type varLoc struct {
	name     string
	cells    []cell
	readable bool // all its bytes are where a uprobe reads them
}

func varsAt(bi *proc.BinaryInfo, di *debugInfo, pc uint64, line int) (*frameVars, error) {
	fn := bi.PCToFunc(pc)
	if fn == nil {
		return nil, fmt.Errorf("no function at pc %#x", pc)
	}
	off, ok := di.funcs[fn.Entry]
	if !ok {
		return nil, fmt.Errorf("no DWARF entry for %s", fn.Name)
	}
	tree, err := godwarf.LoadTree(off, di.dw, bi.Images[0].StaticBase)
	if err != nil {
		return nil, err
	}
	fde, err := di.frames.FDEForPC(pc)
	if err != nil {
		return nil, err
	}
	fctx, err := fde.EstablishFrame(pc)
	if err != nil {
		return nil, err
	}
	if fctx.CFA.Rule != frame.RuleCFA || fctx.CFA.Reg != 7 {
		return nil, fmt.Errorf("the frame at pc %#x is not SP-based", pc)
	}
	const spBase = 1 << 40
	regs := op.NewDwarfRegisters(0, nil, binary.LittleEndian, 16, 7, 6, 0)
	regs.CFA = spBase + fctx.CFA.Offset
	regs.FrameBase = regs.CFA
	regs.AddReg(7, op.DwarfRegisterFromUint64(spBase))
	// The variables of the frame Delve reads at pc: those of the inlined
	// call it is in, if it is in one.
	frameTree := innermost(tree, pc)
	out := &frameVars{inlined: frameTree.Offset, vars: make(map[int]varLoc), fp: make(map[string]string), readable: make(map[string]bool)}
	for _, v := range reader.Variables(frameTree, pc, line, reader.VariablesOnlyVisible|reader.VariablesSkipInlinedSubroutines) {
		name, _ := v.Val(dwarf.AttrName).(string)
		toff, ok := v.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok || name == "" {
			continue
		}
		typ, err := bi.Images[0].Type(toff)
		if err != nil || typ.Size() <= 0 {
			continue
		}
		size := typ.Size()
		addr, pieces, _, err := bi.Location(v.Tree, dwarf.AttrLocation, pc, *regs, nil)
		if err != nil {
			continue // no location here: optimized away, as Delve shows it
		}
		vl := varLoc{name: name, readable: true}
		if len(pieces) == 0 {
			o := addr - spBase
			if o < 0 || o > 1<<16 {
				out.bad = true // memory elsewhere, through a register perhaps
				continue
			}
			for i := range size {
				vl.cells = append(vl.cells, cell{reg: -1, off: o + i})
			}
		} else {
			for _, p := range pieces {
				n := int64(p.Size)
				if n == 0 {
					n = size
				}
				switch p.Kind {
				case op.RegPiece:
					f, ok := dwarfFamily(p.Val)
					if !ok {
						out.bad = true
					}
					if f >= famXMM0 {
						vl.readable = false
						out.fp[name] = typ.String()
					}
					for i := range n {
						vl.cells = append(vl.cells, cell{reg: f, off: i})
					}
				case op.AddrPiece:
					o := int64(p.Val) - spBase
					if o < 0 || o > 1<<16 {
						out.bad = true
					}
					for i := range n {
						vl.cells = append(vl.cells, cell{reg: -1, off: o + i})
					}
				case op.ImmPiece:
					var b [8]byte
					binary.LittleEndian.PutUint64(b[:], p.Val)
					for i := range n {
						c := cell{imm: true}
						if int(i) < len(p.Bytes) {
							c.val = p.Bytes[i]
						} else if i < 8 && p.Bytes == nil {
							c.val = b[i]
						}
						vl.cells = append(vl.cells, c)
					}
				}
			}
		}
		vl.readable = vl.readable && !out.bad
		out.readable[name] = out.readable[name] || vl.readable
		out.vars[int(v.Offset)] = vl
	}
	return out, nil
}

// innermost returns the deepest inlined call in tree that contains pc, or
// tree itself: the frame whose variables a hit at pc shows.
func innermost(tree *godwarf.Tree, pc uint64) *godwarf.Tree {
	for _, c := range tree.Children {
		if c.Tag == dwarf.TagInlinedSubroutine && c.ContainsPC(pc) {
			return innermost(c, pc)
		}
		if c.Tag == dwarf.TagLexDwarfBlock && c.ContainsPC(pc) {
			if in := innermost(c, pc); in != c {
				return in
			}
		}
	}
	return tree
}

// fpNeeded returns the needed variables in a floating-point register.
func (fv *frameVars) fpNeeded(needed map[string]string) map[string]string {
	out := make(map[string]string)
	for name := range needed {
		if typ, ok := fv.fp[name]; ok && !fv.readable[name] {
			out[name] = typ
		}
	}
	return out
}

// provedAgainst reports whether every variable readable here (fv, at a
// later PC of the run, in state st) holds what it held at the line's first
// PC (fv0, whose bytes were at0), and every frame store since first wrote
// only bytes of such variables.
func (fv *frameVars) provedAgainst(fv0 *frameVars, at0 map[int]cellVal, st *symState, stores []stackRange) bool {
	if fv.bad {
		return false
	}
	held := make(map[int64]bool)
	for k, v := range fv.vars {
		if !v.readable {
			continue
		}
		if _, ok := fv0.vars[k]; !ok || !st.read(v.cells).equal(at0[k]) {
			return false
		}
		for _, c := range v.cells {
			if c.reg == -1 && !c.imm {
				held[c.off] = true
			}
		}
	}
	for _, r := range stores {
		for o := r.off; o < r.off+r.n; o++ {
			if !held[o] {
				return false
			}
		}
	}
	return true
}

// score counts the needed variables, then all, readable by a uprobe.
type score struct{ needed, all int }

func (fv *frameVars) score(needed map[string]string) score {
	var s score
	for name, ok := range fv.readable {
		if !ok {
			continue
		}
		s.all++
		if _, n := needed[name]; n {
			s.needed++
		}
	}
	return s
}

func (s score) better(o score) bool {
	return s.needed > o.needed || s.needed == o.needed && s.all > o.all
}

// describe says where a site's probe went and why, for the status.
func (s site) describe(file string, line int) string {
	if s.pc == s.first || len(s.gained) == 0 {
		return ""
	}
	return fmt.Sprintf("probed %d bytes into %s:%d (pc %#x), where %s is in memory: at the line's first instruction it is in a floating-point register, which a uprobe cannot read",
		s.pc-s.first, file, line, s.pc, strings.Join(s.gained, ", "))
}
