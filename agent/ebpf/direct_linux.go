package ebpf

// The direct decoder reads the common values of a hit from its registers
// and copied memory without Delve's evaluator, which was most of what
// decoding a hit cost: Delve reads a frame's variables from DWARF twice
// (once for the arguments, once for the locals), evaluates each location
// expression, and builds its values through several layers of caches. What
// the direct decoder makes of a value is what api.ConvertVar makes of what
// Delve loads: the rest of the conversion, and Delve's printer, are shared.

import (
	"bytes"
	"debug/dwarf"
	"encoding/binary"
	"fmt"
	"go/token"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/go-delve/delve/pkg/dwarf/reader"
	"github.com/go-delve/delve/pkg/goversion"
	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/pkg/proc/linutil"
	"github.com/go-delve/delve/service/api"

	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
	"github.com/riptrace/riptrace/agent/internal/snapshot"
)

// framePlan is how the arguments and locals of the frame at one PC are
// read: Delve's own list of them, learned at the first hit there, with
// where each one lives and how its type decodes. A variable the decoder
// cannot read (a channel, a function, a large map, an interface of a type
// not met yet, a value in a floating-point register, one partly copied at
// this hit) is read by Delve's evaluator, alone.
type framePlan struct {
	ok      bool // false: Delve reads the frame, as before
	vars    []planVar
	checked int // hits decoded both ways (see selfChecks)
}

// planVar is one variable of a framePlan.
type planVar struct {
	name      string
	arg       bool
	declLine  int64
	typ       *dtype        // nil: Delve reads it
	fixed     *api.Variable // what Delve reads of it at every hit: unreadable
	evaluable bool          // Delve can read it alone (see makePlan)
	off       int64         // its bytes, or those of its pointer if escaped, from SP
	escaped   bool          // the frame holds a pointer to it (DWARF's &name)
	pieces    []op.Piece
	dropped   *dlvvalue.Dropped // what of it the pieces leave out
}

// selfChecks is how many hits at a PC are decoded both ways, the direct
// decoder's values held to Delve's: a difference leaves the PC to Delve
// for good. Tests check every hit (verifyStacks).
const selfChecks = 2

// maxFramePlans bounds the plans a target keeps: one per PC traced.
const maxFramePlans = 1024

// dtype is a type as the direct decoder reads it.
type dtype struct {
	kind     reflect.Kind // reflect.Invalid: not decoded here
	size     int64
	name     string // as api.PrettyTypeName names it
	realName string
	fields   []dfield // of a struct
	elem     *dtype   // of a pointer, slice or array
	count    int64    // of an array
	stride   int64    // of an array or slice's elements
	// Where a string's or a slice's header keeps its parts.
	ptrOff, lenOff, capOff int64
	// An interface's: where it keeps its type word (an itab's, or a
	// runtime type) and its data word, where an itab keeps the type (-1:
	// the interface is empty, its type word is the type), and how Delve
	// names the data of a nil one.
	tabOff, dataOff, tabType int64
	voidName, voidReal       string
	m                        *dmap // a map's layout
}

// dmap is how a map is laid out, as a swiss table (Go 1.24): a header,
// and for a small map (dirLen 0) one group of slots, each a key and an
// element, which dirPtr points to. A larger map is Delve's to read.
type dmap struct {
	hdrSize                       int64
	firstRead                     int64 // the header's field Delve reads first
	usedOff, dirPtrOff, dirLenOff int64
	groupSize, ctrlOff, slotsOff  int64
	slots, slotSize               int64
	keyOff, elemOff               int64
	key, elem                     *dtype
}

// ifaceType is the dynamic type of the interfaces whose type word is the
// same runtime type, as Delve found it (RuntimeTypeToDIE), learned from
// its reads: the type, and whether the data word points to the value
// (deref) rather than holding it.
type ifaceType struct {
	t     *dtype
	deref bool
}

// maxIfaceTypes bounds the dynamic types a target remembers.
const maxIfaceTypes = 4096

type dfield struct {
	name string
	off  int64
	t    *dtype
}

// varSlab is the memory of the direct decoder's values, used again for
// each frame read: they live only until the converter has made the hit's
// tree of them, and allocating them was most of what the collector had to
// do for a hit. A frame whose values need more than maxSlabChunks chunks
// allocates the rest as any other.
type varSlab struct {
	chunks [][]api.Variable
	used   []int // of each chunk
	i      int   // the chunk in use
	// out, from and evaluable are frameVars's, used again likewise.
	out       []dlvvalue.Var
	from      []*planVar
	evaluable []bool
}

const (
	slabChunk     = 512
	maxSlabChunks = 16
)

// reset makes all of the slab free again, zeroed.
func (s *varSlab) reset() {
	for k := 0; k <= s.i && k < len(s.chunks); k++ {
		clear(s.chunks[k][:s.used[k]])
		s.used[k] = 0
	}
	s.i = 0
}

// alloc returns n zeroed values, with no room to append to.
func (s *varSlab) alloc(n int) []api.Variable {
	if n > slabChunk {
		return make([]api.Variable, n)
	}
	if s.i < len(s.chunks) && s.used[s.i]+n > slabChunk {
		s.i++
	}
	if s.i == len(s.chunks) {
		if len(s.chunks) == maxSlabChunks {
			return make([]api.Variable, n)
		}
		s.chunks = append(s.chunks, make([]api.Variable, slabChunk))
		s.used = append(s.used, 0)
	}
	u := s.used[s.i]
	s.used[s.i] += n
	return s.chunks[s.i][u : u+n : u+n]
}

// directStats counts what the decoder did, for tests and benchmarks.
type directStats struct {
	Frames        int // frames read by the direct decoder
	Direct, Delve int // their variables read each way
	Decoded       int // of Direct, those decoded from the hit (not fixed by the plan)
}

// frameVars is dlvvalue.Converter.Frame for the hit being decoded.
func (t *target) frameVars(scopeOf dlvvalue.Scope, load proc.LoadConfig, args bool) ([]dlvvalue.Var, bool) {
	regs := t.regs
	pc := regs.Rip
	plan := t.plans[pc]
	if plan == nil {
		if len(t.plans) >= maxFramePlans {
			return nil, false
		}
		scope, err := scopeOf()
		if err != nil {
			return nil, false
		}
		plan = t.makePlan(scope, pc)
		if t.plans == nil {
			t.plans = make(map[uint64]*framePlan)
		}
		t.plans[pc] = plan
	}
	if !plan.ok {
		return nil, false
	}
	// Maps load as LocalVariables loads them.
	evalLoad := load
	evalLoad.MaxMapBuckets = 100 * load.MaxArrayValues
	if t.ifaces == nil {
		t.ifaces = make(map[uint64]ifaceType)
	}
	// The values of the frame read before are converted: their memory is
	// free.
	t.slab.reset()
	d := decoder{mem: &t.mem, load: load, regs: regs, ifaces: t.ifaces, slab: &t.slab}
	out := t.slab.out[:0]
	from := t.slab.from[:0] // of each variable read directly, but constants
	evaluable := t.slab.evaluable[:0]
	defer func() { t.slab.out, t.slab.from, t.slab.evaluable = out[:0], from[:0], evaluable[:0] }()
	for i := range plan.vars {
		pv := &plan.vars[i]
		if pv.arg != args {
			continue
		}
		if pv.fixed != nil {
			av := &t.slab.alloc(1)[0]
			*av = *pv.fixed
			out = append(out, dlvvalue.Var{Direct: av, DeclLine: pv.declLine})
			from = append(from, nil)
			evaluable = append(evaluable, pv.evaluable)
			t.direct.Direct++
			continue
		}
		d.newType = 0
		if pv.typ != nil {
			d.misses = nil
			if av, ok := d.variable(pv); ok {
				t.mem.misses = append(t.mem.misses, d.misses...)
				out = append(out, dlvvalue.Var{Direct: av, DeclLine: pv.declLine, Dropped: pv.dropped})
				from = append(from, pv)
				evaluable = append(evaluable, pv.evaluable)
				t.direct.Direct++
				t.direct.Decoded++
				continue
			}
			if d.unsupported {
				pv.typ = nil
				d.unsupported = false
			}
		}
		if !pv.evaluable {
			return nil, false
		}
		scope, err := scopeOf()
		if err != nil {
			return nil, false
		}
		v, err := scope.EvalExpression(pv.name, evalLoad)
		if err != nil {
			return nil, false
		}
		if d.newType != 0 && pv.typ != nil && pv.typ.kind == reflect.Interface {
			t.learnIface(v, d.newType, d.newData)
		}
		out = append(out, dlvvalue.Var{Delve: v, DeclLine: pv.declLine})
		from = append(from, nil)
		evaluable = append(evaluable, true)
		t.direct.Delve++
	}
	// Delve reads as zero some values whose memory the hit did not copy,
	// and each value of a frame is checked against every read of it that
	// missed (markUncaptured): a value read here that such a read overlaps
	// is read by Delve, to be marked as Delve's would be.
	t.direct.Frames++
	if len(t.mem.misses) > 0 {
		for i := range out {
			if from[i] == nil {
				continue
			}
			// The values it went through: read again, as the first
			// reading did not note them, misses being rare.
			d.spans, d.collect = nil, true
			d.variable(from[i])
			d.collect = false
			if !overlapsAny(d.spans, t.mem.misses) {
				continue
			}
			if !evaluable[i] {
				return nil, false
			}
			scope, err := scopeOf()
			if err != nil {
				return nil, false
			}
			v, err := scope.EvalExpression(out[i].Direct.Name, evalLoad)
			if err != nil {
				return nil, false
			}
			out[i] = dlvvalue.Var{Delve: v, DeclLine: out[i].DeclLine}
		}
	}
	return out, true
}

// learnIface learns the dynamic type of interfaces whose type word is typ
// from v, an interface Delve read with data word data. Only a type in the
// executable's own mappings is learned: Delve's reading of it from there
// does not depend on what a hit copied.
func (t *target) learnIface(v *proc.Variable, typ, data uint64) {
	if len(t.ifaces) >= maxIfaceTypes || v.Unreadable != nil || v.Kind != reflect.Interface || len(v.Children) != 1 {
		return
	}
	c := &v.Children[0]
	if c.Unreadable != nil || c.Kind == reflect.Invalid || c.DwarfType == nil || c.Name != "data" {
		return
	}
	var b [1]byte
	if _, ok, err := t.snap.ReadStatic(b[:], typ); !ok || err != nil {
		return
	}
	_, isPtr := godwarf.ResolveTypedef(c.DwarfType).(*godwarf.PtrType)
	deref := !isPtr && c.Addr == data
	if !isPtr && !deref && c.DwarfType.Size() != 8 {
		return
	}
	if !deref && v.Flags&proc.VariableFakeAddress == 0 && c.Addr != v.Addr+8 {
		return // not the data word of the interface read
	}
	t.ifaces[typ] = ifaceType{t: t.dtypeOf(c.DwarfType), deref: deref}
}

func overlapsAny(spans, misses []span) bool {
	for _, s := range spans {
		for _, m := range misses {
			if s.overlaps(m) {
				return true
			}
		}
	}
	return false
}

// makePlan learns the plan of the frame at pc from Delve's list of its
// variables at this hit, and where DWARF says each one is.
func (t *target) makePlan(scope *proc.EvalScope, pc uint64) *framePlan {
	plan := &framePlan{}
	if scope.Fn == nil || scope.PC != pc || strings.Contains(scope.Fn.Name, "-range") {
		// Not the hit's own frame, or a range-over-func body, whose
		// variables Delve merges from the frames around it.
		return plan
	}
	vars, err := scope.Locals(0, "")
	if err != nil {
		return plan
	}
	bi := t.snap.BinInfo()
	image := bi.Images[0]
	off, ok := t.di.funcs[scope.Fn.Entry]
	if !ok {
		return plan
	}
	tree, err := godwarf.LoadTree(off, t.di.dw, image.StaticBase)
	if err != nil {
		return plan
	}
	fde, err := t.di.frames.FDEForPC(pc)
	if err != nil {
		return plan
	}
	fctx, err := fde.EstablishFrame(pc)
	if err != nil || fctx.CFA.Rule != frame.RuleCFA || fctx.CFA.Reg != 7 {
		return plan
	}
	flags := reader.VariablesOnlyVisible | reader.VariablesSkipInlinedSubroutines
	if bi.Producer() != "" && goversion.ProducerAfterOrEqual(bi.Producer(), 1, 15) {
		flags |= reader.VariablesTrustDeclLine
	}
	entries := reader.Variables(tree, pc, scope.Line, flags)
	for _, e := range entries {
		name, _ := e.Val(dwarf.AttrName).(string)
		if name == ".dict" {
			// A generic function: Delve resolves its types through the
			// dictionary.
			return plan
		}
	}
	names := make(map[string]int)
	for _, v := range vars {
		names[v.Name]++
	}
	sp := t.regs.Rsp
	for _, v := range vars {
		if v.Flags&proc.VariableReturnArgument != 0 {
			continue
		}
		pv := planVar{name: v.Name, arg: v.Flags&proc.VariableArgument != 0, declLine: v.DeclLine}
		// Delve's evaluator reads a variable alone by its name: not one
		// that another shadows, nor one named as Go names nothing (a
		// result's part in an optimized build, ~r0.len).
		pv.evaluable = names[v.Name] == 1 && token.IsIdentifier(v.Name)
		t.locate(&pv, v, entries, pc, fctx.CFA.Offset, sp)
		plan.vars = append(plan.vars, pv)
	}
	plan.ok = true
	return plan
}

// locate fills in where pv is and how it decodes, if the one DWARF entry of
// entries that is v says so plainly (in the frame, or in general registers)
// and that is where Delve read v at this hit, sp.
func (t *target) locate(pv *planVar, v *proc.Variable, entries []reader.Variable, pc uint64, cfaOff int64, sp uint64) {
	bi := t.snap.BinInfo()
	image := bi.Images[0]
	var found *reader.Variable
	var typ godwarf.Type
	for i := range entries {
		e := &entries[i]
		name, _ := e.Val(dwarf.AttrName).(string)
		escaped := name == "&"+v.Name
		if name != v.Name && !escaped {
			continue
		}
		if l, _ := e.Val(dwarf.AttrDeclLine).(int64); l != v.DeclLine {
			continue
		}
		if e.Val(godwarf.AttrGoClosureOffset) != nil {
			return // captured by a closure: Delve may read it elsewhere
		}
		toff, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
		if !ok {
			return
		}
		et, err := image.Type(toff)
		if err != nil {
			return
		}
		if escaped {
			p, ok := et.(*godwarf.PtrType)
			if !ok {
				return
			}
			et = p.Type
		}
		if api.PrettyTypeName(et) != api.PrettyTypeName(v.DwarfType) {
			continue
		}
		if found != nil {
			return // two of them: which one is v is Delve's to say
		}
		found, typ, pv.escaped = e, et, escaped
	}
	if found == nil {
		return
	}
	if v.Unreadable != nil {
		// Where DWARF's location of it fails at this PC, whatever the
		// registers, Delve's value is the same unreadable one at every hit.
		if _, _, _, err := bi.Location(found.Tree, dwarf.AttrLocation, pc, fakeRegs(image.StaticBase, 1<<40, cfaOff), nil); err != nil && !pv.escaped && err.Error() == v.Unreadable.Error() {
			pv.fixed = api.ConvertVar(v)
		}
		return
	}
	// Where it is, the same from any SP: evaluated with two sets of
	// registers, a location that depends on anything but SP differs.
	var at [2]struct {
		addr   int64
		pieces []op.Piece
	}
	loc := ""
	for k, base := range []uint64{1 << 40, 3 << 40} {
		addr, pieces, descr, err := bi.Location(found.Tree, dwarf.AttrLocation, pc, fakeRegs(image.StaticBase, base, cfaOff), nil)
		if err != nil {
			return
		}
		loc = descr.String()
		at[k].addr = addr - int64(base)
		for _, p := range pieces {
			switch {
			case p.Kind == op.RegPiece && p.Val < 16 && p.Val != 7:
			case p.Kind == op.AddrPiece:
				p.Val -= base
			case p.Kind == op.ImmPiece:
				// An empty piece, which reads as zeros and is marked as
				// left out (dropped); or a constant, the same at every
				// hit if it is the same from any registers (compared
				// below).
			default:
				return // a floating-point register, or SP itself
			}
			at[k].pieces = append(at[k].pieces, p)
		}
	}
	if len(at[0].pieces) != len(at[1].pieces) {
		return
	}
	for i := range at[0].pieces {
		a, b := at[0].pieces[i], at[1].pieces[i]
		if a.Kind != b.Kind || a.Val != b.Val || a.Size != b.Size || !bytes.Equal(a.Bytes, b.Bytes) {
			return
		}
	}
	if len(at[0].pieces) == 0 && at[0].addr != at[1].addr {
		return
	}
	pv.pieces, pv.off = at[0].pieces, at[0].addr
	if len(pv.pieces) > 0 {
		pv.dropped = dlvvalue.DroppedOf(typ, loc)
	}
	// Delve read it there at this hit.
	switch {
	case len(pv.pieces) > 0:
		if pv.escaped || v.Flags&proc.VariableFakeAddress == 0 {
			return
		}
	case pv.escaped:
		if w, ok := t.mem.word(sp + uint64(pv.off)); !ok || w != v.Addr || v.Flags&proc.VariableEscaped == 0 {
			return
		}
	default:
		if v.Addr != sp+uint64(pv.off) || v.Flags&(proc.VariableFakeAddress|proc.VariableEscaped) != 0 {
			return
		}
	}
	pv.typ = t.dtypeOf(typ)
}

// fakeRegs are registers for evaluating a location at a PC whose CFA is
// cfaOff above SP: SP is base, and the other registers made up from it.
func fakeRegs(staticBase, base uint64, cfaOff int64) op.DwarfRegisters {
	regs := op.NewDwarfRegisters(staticBase, nil, binary.LittleEndian, 16, 7, 6, 0)
	for r := uint64(0); r < 17; r++ {
		regs.AddReg(r, op.DwarfRegisterFromUint64(base+0x10000*(r+1)))
	}
	regs.AddReg(7, op.DwarfRegisterFromUint64(base))
	regs.CFA = int64(base) + cfaOff
	regs.FrameBase = regs.CFA
	return *regs
}

// dtypeOf returns how values of typ decode, made once per type.
func (t *target) dtypeOf(typ godwarf.Type) *dtype {
	if d := t.dtypes[typ]; d != nil {
		return d
	}
	if t.dtypes == nil {
		t.dtypes = make(map[godwarf.Type]*dtype)
	}
	d := &dtype{name: api.PrettyTypeName(typ), size: typ.Size()}
	t.dtypes[typ] = d // before its parts: a type may hold pointers to itself
	real := godwarf.ResolveTypedef(typ)
	d.realName = api.PrettyTypeName(real)
	switch rt := real.(type) {
	case *godwarf.BoolType:
		d.kind = reflect.Bool
	case *godwarf.IntType:
		// A named integer type of the program may have constants, which
		// Delve names (ConstDescr).
		if !strings.Contains(d.name, ".") && sizedInt(rt.ByteSize) {
			d.kind = reflect.Int
		}
	case *godwarf.UintType:
		if !strings.Contains(d.name, ".") && sizedInt(rt.ByteSize) {
			d.kind = reflect.Uint
		}
	case *godwarf.FloatType:
		switch rt.ByteSize {
		case 4:
			d.kind = reflect.Float32
		case 8:
			d.kind = reflect.Float64
		}
	case *godwarf.StringType:
		ok := 0
		for _, f := range rt.Field {
			switch f.Name {
			case "str":
				d.ptrOff = f.ByteOffset
				ok++
			case "len":
				d.lenOff = f.ByteOffset
				ok++
			}
		}
		if ok == 2 {
			d.kind = reflect.String
		}
	case *godwarf.SliceType:
		ok := 0
		var elem godwarf.Type
		for _, f := range rt.Field {
			switch f.Name {
			case "array":
				if p, isPtr := f.Type.(*godwarf.PtrType); isPtr {
					elem = p.Type
					d.ptrOff = f.ByteOffset
					ok++
				}
			case "len":
				d.lenOff = f.ByteOffset
				ok++
			case "cap":
				d.capOff = f.ByteOffset
				ok++
			}
		}
		if ok == 3 {
			d.stride = elem.Size()
			if p, isPtr := elem.(*godwarf.PtrType); isPtr {
				d.stride = p.ByteSize
			}
			if d.stride > 0 {
				d.elem = t.dtypeOf(elem)
				d.kind = reflect.Slice
			}
		}
	case *godwarf.ArrayType:
		if rt.Count > 0 && rt.ByteSize/rt.Count > 0 {
			d.count, d.stride = rt.Count, rt.ByteSize/rt.Count
			d.elem = t.dtypeOf(rt.Type)
			d.kind = reflect.Array
		}
	case *godwarf.PtrType:
		// Not a pointer to a pointer or an interface, which Delve loads a
		// level deeper, nor one to C or to nothing.
		switch godwarf.ResolveTypedef(rt.Type).(type) {
		case *godwarf.PtrType, *godwarf.InterfaceType, *godwarf.VoidType:
		default:
			if !strings.HasPrefix(rt.Type.Common().Name, "C.") && rt.Type.Size() > 0 {
				d.elem = t.dtypeOf(rt.Type)
				d.kind = reflect.Ptr
			}
		}
	case *godwarf.InterfaceType:
		// A context carries the hit's trace context, which
		// dlvvalue.TraceContext reads from Delve's values.
		st, ok := godwarf.ResolveTypedef(&rt.TypedefType).(*godwarf.StructType)
		if !ok || typ.String() == "context.Context" {
			break
		}
		found := 0
		d.tabType = -1
		for _, f := range st.Field {
			switch f.Name {
			case "tab":
				// Delve reads the type from the itab's Type, or _type.
				p, isPtr := f.Type.(*godwarf.PtrType)
				if !isPtr {
					return d
				}
				itab, isStruct := godwarf.ResolveTypedef(p.Type).(*godwarf.StructType)
				if !isStruct {
					return d
				}
				for _, name := range []string{"Type", "_type"} {
					for _, tf := range itab.Field {
						if tf.Name == name && d.tabType < 0 {
							d.tabType = tf.ByteOffset
						}
					}
				}
				if d.tabType < 0 {
					return d
				}
				d.tabOff = f.ByteOffset
				found++
			case "_type":
				d.tabOff = f.ByteOffset
				found++
			case "data":
				p, isPtr := f.Type.(*godwarf.PtrType)
				if !isPtr {
					return d
				}
				d.dataOff = f.ByteOffset
				d.voidName, d.voidReal = api.PrettyTypeName(p.Type), api.PrettyTypeName(godwarf.ResolveTypedef(p.Type))
				found++
			}
		}
		if found == 2 && d.size == 16 {
			d.kind = reflect.Interface
		}
	case *godwarf.MapType:
		if m := t.dmapOf(rt); m != nil {
			d.m = m
			d.kind = reflect.Map
		}
	case *godwarf.StructType:
		// time.Time is formatted by Delve; a closure's struct has
		// variables captured by reference.
		if rt.Name == "time.Time" || strings.HasPrefix(rt.Name, "C.") {
			break
		}
		for _, f := range rt.Field {
			if rt.StructName == "" && strings.HasPrefix(f.Name, "&") {
				d.fields = nil
				return d
			}
			d.fields = append(d.fields, dfield{name: f.Name, off: f.ByteOffset, t: t.dtypeOf(f.Type)})
		}
		d.kind = reflect.Struct
	}
	return d
}

// dmapOf returns the layout of maps of type mt, nil if they are not swiss
// tables the decoder reads as Delve does (mapiter.go).
func (t *target) dmapOf(mt *godwarf.MapType) *dmap {
	field := func(st *godwarf.StructType, name string) *godwarf.StructField {
		for _, f := range st.Field {
			if f.Name == name {
				return f
			}
		}
		return nil
	}
	structOf := func(typ godwarf.Type) *godwarf.StructType {
		st, _ := godwarf.ResolveTypedef(typ).(*godwarf.StructType)
		return st
	}
	ptrTo := func(typ godwarf.Type) godwarf.Type {
		if p, ok := typ.(*godwarf.PtrType); ok {
			return p.Type
		}
		return nil
	}
	p, ok := godwarf.ResolveTypedef(&mt.TypedefType).(*godwarf.PtrType)
	if !ok {
		return nil
	}
	hdr := structOf(p.Type)
	if hdr == nil || field(hdr, "buckets") != nil {
		return nil // not a swiss table
	}
	used, dirPtr, dirLen := field(hdr, "used"), field(hdr, "dirPtr"), field(hdr, "dirLen")
	if used == nil || dirPtr == nil || dirLen == nil || used.Type.Size() != 8 || dirLen.Type.Size() != 8 {
		return nil
	}
	// dirPtr is a **table, whose groups point to the group type.
	tablePtr := ptrTo(dirPtr.Type)
	if tablePtr == nil {
		return nil
	}
	table, _ := ptrTo(tablePtr).(*godwarf.StructType)
	if table == nil {
		return nil
	}
	groups := field(table, "groups")
	if groups == nil {
		return nil
	}
	groupsRef, _ := groups.Type.(*godwarf.StructType)
	if groupsRef == nil {
		return nil
	}
	data := field(groupsRef, "data")
	if data == nil {
		return nil
	}
	group := structOf(ptrTo(data.Type))
	if group == nil {
		return nil
	}
	ctrl, slots := field(group, "ctrl"), field(group, "slots")
	if ctrl == nil || slots == nil || field(group, "keys") != nil {
		return nil
	}
	arr, ok := godwarf.ResolveTypedef(slots.Type).(*godwarf.ArrayType)
	if !ok || arr.Count <= 0 || arr.Count > ctrl.Type.Size() {
		return nil
	}
	slot, _ := arr.Type.(*godwarf.StructType)
	if slot == nil {
		return nil
	}
	key, elem := field(slot, "key"), field(slot, "elem")
	if key == nil || elem == nil {
		return nil
	}
	// A key or element too large is kept behind a pointer, which Delve
	// follows.
	for _, f := range []struct{ slot, want godwarf.Type }{{key.Type, mt.KeyType}, {elem.Type, mt.ElemType}} {
		_, isPtr := godwarf.ResolveTypedef(f.slot).(*godwarf.PtrType)
		_, wantPtr := f.want.(*godwarf.PtrType)
		if isPtr && !wantPtr {
			return nil
		}
	}
	firstRead := used.ByteOffset
	for _, f := range hdr.Field {
		if f == used || f == dirLen {
			firstRead = f.ByteOffset
			break
		}
	}
	return &dmap{
		hdrSize: hdr.Size(), firstRead: firstRead, usedOff: used.ByteOffset, dirPtrOff: dirPtr.ByteOffset, dirLenOff: dirLen.ByteOffset,
		groupSize: group.Size(), ctrlOff: ctrl.ByteOffset, slotsOff: slots.ByteOffset,
		slots: arr.Count, slotSize: arr.ByteSize / arr.Count,
		keyOff: key.ByteOffset, elemOff: elem.ByteOffset,
		key: t.dtypeOf(key.Type), elem: t.dtypeOf(elem.Type),
	}
}

// sizedInt reports whether Delve reads an integer of size bytes.
func sizedInt(size int64) bool {
	return size == 1 || size == 2 || size == 4 || size == 8
}

// decoder reads the values of one hit.
type decoder struct {
	mem  *regionMemory
	load proc.LoadConfig
	regs *linutil.AMD64PtraceRegs
	// unsupported is set by a read that met a type the decoder does not
	// read: that variable is Delve's for good.
	unsupported bool
	// spans are the values in memory that a variable's read went through,
	// noted if collect is set; misses the reads Delve's would have missed
	// (see mapValue).
	spans, misses []span
	collect       bool
	// ifaces are the target's dynamic types of interfaces (see ifaceType);
	// a read of a variable that is an interface of a type it does not
	// know (top) sets newType to its type word, and newData to its data
	// word, for Delve's read of the variable to teach it.
	ifaces           map[uint64]ifaceType
	newType, newData uint64
	top              *api.Variable
	slab             *varSlab // where values are made
}

// variable reads pv as api.ConvertVar converts what Delve loads of it.
func (d *decoder) variable(pv *planVar) (*api.Variable, bool) {
	sp := d.regs.Rsp
	var b []byte
	addr, fake := sp+uint64(pv.off), false
	switch {
	case len(pv.pieces) > 0:
		b, fake = d.composite(pv.pieces, pv.typ.size), true
		if b == nil {
			return nil, false
		}
		addr = proc.FakeAddressBase
	case pv.escaped:
		w, ok := d.mem.word(addr)
		if !ok || w < snapshot.NullPage {
			return nil, false
		}
		addr = w
	}
	av := &d.slab.alloc(1)[0]
	d.top = av
	if !d.value(av, pv.typ, pv.name, addr, b, 0, fake) {
		return nil, false
	}
	av.DeclLine = pv.declLine
	return av, true
}

// composite assembles a value from the pieces DWARF says it is in, as
// Delve's compositeMemory does; nil if a piece is not in the hit.
func (d *decoder) composite(pieces []op.Piece, size int64) []byte {
	var data []byte
	for i, p := range pieces {
		switch p.Kind {
		case op.RegPiece:
			n := p.Size
			if n == 0 && i == len(pieces)-1 {
				n = 8
			}
			if n > 8 {
				return nil
			}
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], gpReg(d.regs, p.Val))
			data = append(data, w[:n]...)
		case op.AddrPiece:
			b, ok := d.mem.bytes(d.regs.Rsp+p.Val, int64(p.Size))
			if !ok {
				return nil
			}
			data = append(data, b...)
		case op.ImmPiece:
			b := p.Bytes
			if b == nil {
				b = make([]byte, max(p.Size, 8))
				binary.LittleEndian.PutUint64(b, p.Val)
			}
			n := p.Size
			if n == 0 && i == len(pieces)-1 {
				n = 8
			}
			if n > len(b) {
				return nil
			}
			data = append(data, b[:n]...)
		default:
			return nil
		}
	}
	if pad := int(size) - len(data); pad > 0 && pad < 8 {
		data = append(data, make([]byte, pad)...)
	}
	if int64(len(data)) < size {
		return nil
	}
	return data
}

// gpReg returns the general register of DWARF number n.
func gpReg(r *linutil.AMD64PtraceRegs, n uint64) uint64 {
	return [...]uint64{r.Rax, r.Rdx, r.Rcx, r.Rbx, r.Rsi, r.Rdi, r.Rbp, r.Rsp, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15}[n]
}

// need returns the n bytes of a value at addr: b if it has them, else what
// the hit copied of memory there.
func (d *decoder) need(b []byte, addr uint64, n int64, fake bool) ([]byte, bool) {
	if int64(len(b)) >= n {
		return b, true
	}
	if fake || b != nil {
		return nil, false
	}
	b, ok := d.mem.bytes(addr, n)
	if ok {
		if d.collect {
			d.spans = append(d.spans, span{addr, uint64(n)})
		}
	}
	return b, ok
}

// value fills av with the value of type t at addr, as newVariable and
// loadValueInternal load it at recursion level and api.ConvertVar converts
// it. b holds its bytes if they were read already (all of them, in a
// value's parts); fake says addr is not an address (a value in registers,
// and the values in it). It returns false where Delve's value would not be
// a plain read one: unreadable, or an address Delve made up printed.
func (d *decoder) value(av *api.Variable, t *dtype, name string, addr uint64, b []byte, level int, fake bool) bool {
	av.Name, av.Addr, av.Kind, av.Type, av.RealType = name, addr, t.kind, t.name, t.realName
	if !fake && d.collect {
		d.spans = append(d.spans, span{addr, uint64(t.size)})
	}
	switch t.kind {
	case reflect.Invalid:
		d.unsupported = true
		return false
	case reflect.Struct:
		av.Len = int64(len(t.fields))
		if level > d.load.MaxVariableRecurse {
			// Delve prints its address, made up if it is in registers.
			return !fake || len(t.fields) == 0
		}
		b, ok := d.need(b, addr, t.size, fake)
		if !ok {
			return false
		}
		av.Children = d.slab.alloc(len(t.fields))
		for i, f := range t.fields {
			if !d.value(&av.Children[i], f.t, f.name, addr+uint64(f.off), b[f.off:], level+1, fake) {
				return false
			}
		}
		return true
	case reflect.Ptr:
		b, ok := d.need(b, addr, 8, fake)
		if !ok {
			return false
		}
		p := binary.LittleEndian.Uint64(b)
		av.Len = 1
		av.Value = strconv.FormatUint(p, 10)
		av.Children = d.slab.alloc(1)
		c := &av.Children[0]
		if p == 0 {
			// Not loaded: only what newVariable sets.
			c.Kind, c.Type, c.RealType = t.elem.kind, t.elem.name, t.elem.realName
			if t.elem.kind == reflect.Invalid {
				d.unsupported = true
				return false
			}
			if t.elem.kind == reflect.Array {
				c.Len, c.Cap = t.elem.count, t.elem.count
			}
			return true
		}
		if p < snapshot.NullPage {
			return false
		}
		return d.value(c, t.elem, "", p, nil, level, false)
	case reflect.Array:
		av.Base, av.Len, av.Cap = addr, t.count, t.count
		count := min(t.count, int64(d.load.MaxArrayValues))
		b, ok := d.need(b, addr, count*t.stride, fake)
		if !ok {
			return false
		}
		return d.elements(av, t, addr, b, count, level, fake)
	case reflect.Slice:
		b, ok := d.need(b, addr, t.size, fake)
		if !ok {
			return false
		}
		le := binary.LittleEndian
		av.Base = le.Uint64(b[t.ptrOff:])
		av.Len = int64(le.Uint64(b[t.lenOff:]))
		av.Cap = int64(le.Uint64(b[t.capOff:]))
		if av.Len < 0 || av.Base == 0 && av.Len > 0 {
			return false
		}
		count := min(av.Len, int64(d.load.MaxArrayValues))
		if count == 0 {
			av.Children = []api.Variable{}
			return true
		}
		if av.Base < snapshot.NullPage || av.Base+uint64(count*t.stride) < av.Base {
			return false
		}
		elems, ok := d.need(nil, av.Base, count*t.stride, false)
		if !ok {
			return false
		}
		return d.elements(av, t, av.Base, elems, count, level, false)
	case reflect.Interface:
		b, ok := d.need(b, addr, t.size, fake)
		if !ok {
			return false
		}
		le := binary.LittleEndian
		tab, data := le.Uint64(b[t.tabOff:]), le.Uint64(b[t.dataOff:])
		av.Children = d.slab.alloc(1)
		c := &av.Children[0]
		if tab == 0 {
			// A nil interface: its data, as a pointer to nothing, which
			// Delve does not read, and says so if it is not nil (an
			// optimized build may have kept only the data word).
			c.Kind, c.Type, c.RealType, c.Addr = reflect.Invalid, t.voidName, t.voidReal, data
			if data != 0 {
				c.Unreadable = fmt.Sprintf("unknown or unsupported kind: %q", reflect.Invalid.String())
			}
			return true
		}
		typ := tab
		if t.tabType >= 0 {
			w, ok := d.mem.bytes(tab+uint64(t.tabType), 8)
			if !ok {
				return false
			}
			typ = le.Uint64(w)
		}
		it, ok := d.ifaces[typ]
		if !ok {
			if av == d.top {
				// Delve's read of the variable, the interface itself,
				// will teach it.
				d.newType, d.newData = typ, data
			}
			return false
		}
		if level > d.load.MaxVariableRecurse {
			return false // Delve prints its address
		}
		if it.deref {
			if data < snapshot.NullPage {
				return false
			}
			return d.value(c, it.t, "data", data, nil, level, false)
		}
		if it.t.size != 8 {
			return false
		}
		return d.value(c, it.t, "data", addr+uint64(t.dataOff), b[t.dataOff:t.dataOff+8], level, fake)
	case reflect.Map:
		return d.mapValue(av, t, addr, b, level, fake)
	case reflect.String:
		b, ok := d.need(b, addr, t.size, fake)
		if !ok {
			return false
		}
		le := binary.LittleEndian
		av.Base = le.Uint64(b[t.ptrOff:])
		av.Len = int64(le.Uint64(b[t.lenOff:]))
		if av.Len < 0 {
			return false
		}
		if av.Len == 0 {
			return true
		}
		n := min(av.Len, int64(d.load.MaxStringLen))
		if av.Base < snapshot.NullPage {
			return false
		}
		s, ok := d.mem.bytes(av.Base, n)
		if !ok {
			return false
		}
		if d.collect {
			d.spans = append(d.spans, span{av.Base, uint64(n)})
		}
		av.Value = string(s)
		return true
	}
	b, ok := d.need(b, addr, t.size, fake)
	if !ok {
		return false
	}
	le := binary.LittleEndian
	switch t.kind {
	case reflect.Bool:
		av.Value = strconv.FormatBool(b[0] != 0)
	case reflect.Int:
		var n int64
		switch t.size {
		case 1:
			n = int64(int8(b[0]))
		case 2:
			n = int64(int16(le.Uint16(b)))
		case 4:
			n = int64(int32(le.Uint32(b)))
		default:
			n = int64(le.Uint64(b))
		}
		av.Value = strconv.FormatInt(n, 10)
	case reflect.Uint:
		var n uint64
		switch t.size {
		case 1:
			n = uint64(b[0])
		case 2:
			n = uint64(le.Uint16(b))
		case 4:
			n = uint64(le.Uint32(b))
		default:
			n = le.Uint64(b)
		}
		av.Value = strconv.FormatUint(n, 10)
	case reflect.Float32:
		av.Value = formatFloat(float64(math.Float32frombits(le.Uint32(b))), 32)
	case reflect.Float64:
		av.Value = formatFloat(math.Float64frombits(le.Uint64(b)), 64)
	default:
		panic(fmt.Sprintf("the direct decoder has no case for %s", t.kind))
	}
	return true
}

// mapValue reads a map as loadMap and the swiss map iterator do: its
// header, and if it is small its one group's slots in order, as far as
// the load's limits go.
func (d *decoder) mapValue(av *api.Variable, t *dtype, addr uint64, b []byte, level int, fake bool) bool {
	m := t.m
	b, ok := d.need(b, addr, 8, fake)
	if !ok {
		return false
	}
	le := binary.LittleEndian
	p := le.Uint64(b)
	av.Base = p
	if p == 0 {
		return true
	}
	if p < snapshot.NullPage {
		return false
	}
	hdr, ok := d.need(nil, p, m.hdrSize, false)
	if !ok {
		// Delve's first read of the header misses the hit's copy: the map
		// is not captured (a map on the heap, which the probe does not
		// follow), and that read is one that missed.
		if _, ok := d.mem.bytes(p+uint64(m.firstRead), 8); ok || p+uint64(m.firstRead) < p {
			return false
		}
		miss := span{p + uint64(m.firstRead), 8}
		d.misses = append(d.misses, miss)
		av.Unreadable = fmt.Errorf("%w: %d bytes at %#x", errNotCaptured, miss.n, miss.addr).Error()
		av.Children = []api.Variable{}
		return true
	}
	av.Len = int64(le.Uint64(hdr[m.usedOff:]))
	dirPtr, dirLen := le.Uint64(hdr[m.dirPtrOff:]), int64(le.Uint64(hdr[m.dirLenOff:]))
	if dirLen > 0 {
		return false // a table of groups: Delve's
	}
	if level > d.load.MaxVariableRecurse || av.Len == 0 || d.load.MaxArrayValues == 0 {
		return true
	}
	if dirPtr < snapshot.NullPage {
		return false
	}
	group, ok := d.need(nil, dirPtr, m.groupSize, false)
	if !ok {
		return false
	}
	count := 0
	for k := range m.slots {
		if group[m.ctrlOff+k]&0x80 != 0 {
			continue // empty or deleted
		}
		slot := m.slotsOff + k*m.slotSize
		var key, val api.Variable
		if !d.value(&key, m.key, "", dirPtr+uint64(slot+m.keyOff), group[slot+m.keyOff:], level+1, false) ||
			!d.value(&val, m.elem, "", dirPtr+uint64(slot+m.elemOff), group[slot+m.elemOff:], level+1, false) {
			return false
		}
		av.Children = append(av.Children, key, val)
		count++
		if count >= d.load.MaxArrayValues || int64(count) >= av.Len {
			break
		}
	}
	return true
}

// elements reads count elements of an array or slice from b.
func (d *decoder) elements(av *api.Variable, t *dtype, base uint64, b []byte, count int64, level int, fake bool) bool {
	av.Children = d.slab.alloc(int(count))
	for i := range count {
		o := i * t.stride
		if !d.value(&av.Children[i], t.elem, "", base+uint64(o), b[o:o+t.stride], level+1, fake) {
			return false
		}
	}
	return true
}

// formatFloat is api's convertFloatValue.
func formatFloat(f float64, bits int) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	if f == 0 {
		f = 0 // Delve's constants have no negative zero
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}
