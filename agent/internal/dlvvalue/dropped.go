package dlvvalue

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/service/api"
)

// An optimized build keeps a value in registers or on the stack in pieces,
// and leaves out a piece that is dead at a PC: its location lists it as
// DW_OP_piece with no location before it, an empty piece. Delve reads the
// bytes of an empty piece as zeros, so the struct field, the capacity or
// the interface data left out reads as a plausible zero. Go emits no
// DW_OP_stack_value, so an empty piece is never a real zero: the part is
// gone. Both backends, and the eBPF backend's direct decoder, mark such
// parts through Dropped, from the same text of the location that Delve
// evaluated.

// partOptimizedAway is the reason a part of a value left out reads: short,
// as it also shows inside its parent's value, "{a: 1, b: (unreadable
// optimized away)}".
const partOptimizedAway = "optimized away"

// Dropped is what of a value the compiler left out at a PC. The zero
// Dropped leaves out nothing; a nil one neither.
type Dropped struct {
	Whole bool // the value cannot be read: shown as optimized away
	Cap   bool // only a slice's capacity is left out
	// Parts are the parts left out of a struct (by field), an array (by
	// element) or an interface (0: its data), as Delve lists its children.
	Parts map[int]*Dropped
}

// hole is a run of bytes of a value that no piece holds.
type hole struct{ off, n int64 }

// DroppedOf returns what of a value of type typ the location loc leaves
// out, nil if nothing. loc is Delve's text of the location expression it
// evaluated at the PC (proc.Variable.LocationExpr's String, as api.Variable
// carries it): the empty pieces are told by the text, not by Delve's
// op.Piece, which gives an empty piece as a constant zero.
func DroppedOf(typ godwarf.Type, loc string) *Dropped {
	if typ == nil {
		return nil
	}
	holes := emptyPieces(loc, typ.Size())
	if len(holes) == 0 {
		return nil
	}
	return droppedAt(typ, 0, holes)
}

// emptyPieces returns the bytes of a value size bytes long that the
// location loc holds in no piece: its empty pieces, and what follows its
// last piece (Delve pads that with zeros too). A location of one piece, not
// composed, has none.
func emptyPieces(loc string, size int64) []hole {
	fields := strings.Fields(loc)
	if len(fields) > 0 && strings.HasPrefix(fields[0], "[") {
		fields = fields[1:] // "[block]" or "[start:pc]"
	}
	var holes []hole
	off, ops, pieces := int64(0), 0, 0
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		switch {
		case f == "DW_OP_piece":
			if i+1 == len(fields) {
				return nil
			}
			i++
			n, err := strconv.ParseInt(fields[i], 0, 64)
			if err != nil || n < 0 {
				return nil
			}
			if ops == 0 && n > 0 {
				holes = append(holes, hole{off, n})
			}
			off += n
			ops = 0
			pieces++
		case f == "DW_OP_bit_piece":
			return nil // Go emits none: read as Delve reads it
		case f == "(escaped)":
		default:
			// An operation, an operand of one or an opcode Delve does
			// not name: there is a location before the next piece.
			ops++
		}
	}
	if pieces == 0 {
		return nil
	}
	if ops == 0 && off < size {
		holes = append(holes, hole{off, size - off})
	}
	return holes
}

func overlaps(holes []hole, off, n int64) bool {
	for _, h := range holes {
		if h.off < off+n && off < h.off+h.n {
			return true
		}
	}
	return false
}

// droppedAt is what holes leave out of a value of type typ at off.
func droppedAt(typ godwarf.Type, off int64, holes []hole) *Dropped {
	if !overlaps(holes, off, typ.Size()) {
		return nil
	}
	whole := &Dropped{Whole: true}
	switch t := godwarf.ResolveTypedef(typ).(type) {
	case *godwarf.SliceType:
		// Without its length or its data a slice has no value; without
		// its capacity it still has its elements.
		for _, f := range t.Field {
			if overlaps(holes, off+f.ByteOffset, f.Type.Size()) && f.Name != "cap" {
				return whole
			}
		}
		return &Dropped{Cap: true}
	case *godwarf.InterfaceType:
		// Its type word, then its data word.
		if overlaps(holes, off, 8) {
			return whole
		}
		return &Dropped{Parts: map[int]*Dropped{0: whole}}
	case *godwarf.StringType:
		return whole
	case *godwarf.StructType:
		d := &Dropped{Parts: make(map[int]*Dropped)}
		for i, f := range t.Field {
			if p := droppedAt(f.Type, off+f.ByteOffset, holes); p != nil {
				d.Parts[i] = p
			}
		}
		return d
	case *godwarf.ArrayType:
		stride := t.Type.Size()
		if t.StrideBitSize > 0 {
			stride = t.StrideBitSize / 8
		}
		if stride <= 0 {
			return whole
		}
		d := &Dropped{Parts: make(map[int]*Dropped)}
		for i := range t.Count {
			if p := droppedAt(t.Type, off+i*stride, holes); p != nil {
				d.Parts[int(i)] = p
			}
		}
		return d
	}
	return whole
}

// droppedOfVar is what the compiler left out of v, a variable Delve read
// (composed of pieces, if anything is left out).
func droppedOfVar(v *proc.Variable) *Dropped {
	if !inPieces(v) {
		return nil
	}
	return DroppedOf(typeOf(v), v.LocationExpr.String())
}

func inPieces(v *proc.Variable) bool {
	return v.Flags&proc.VariableFakeAddress != 0 && v.LocationExpr != nil && v.Unreadable == nil
}

// A PieceCache keeps what the compiler left out of the variables held in
// pieces of one process, by PC: the text of a location, which DroppedOf
// reads, costs as much as converting the variable for the hit
// (BenchmarkDroppedOfVar), and where a part is left out is fixed at each
// PC by the location lists. The zero PieceCache is ready to use; a nil
// one keeps nothing.
type PieceCache struct {
	mu sync.Mutex
	// m holds, by PC and variable, what is left out: nil for nothing.
	// Guarded by mu.
	m map[pieceKey]*Dropped
}

// A pieceKey names a variable at a PC: by name, line of declaration, type
// and whether it is shadowed there, which tell apart the variables Delve
// lists in one frame. An expression (droppedOfExpr) is named by its text,
// with decl -1.
type pieceKey struct {
	pc       uint64
	name     string
	decl     int64
	typ      godwarf.Type
	shadowed bool
}

// maxPieceCache bounds a PieceCache: past it, what is left out is read
// again at each hit.
const maxPieceCache = 1 << 14

// get returns what is left out of the variable key names, computing it
// with f once.
func (c *PieceCache) get(key pieceKey, f func() *Dropped) *Dropped {
	if c == nil || key.pc == 0 {
		return f()
	}
	c.mu.Lock()
	d, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return d
	}
	d = f()
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[pieceKey]*Dropped)
	}
	if len(c.m) < maxPieceCache {
		c.m[key] = d
	}
	c.mu.Unlock()
	return d
}

// droppedAtPC is droppedOfVar through c, for v read at pc.
func (c *PieceCache) droppedAtPC(pc uint64, v *proc.Variable) *Dropped {
	if !inPieces(v) {
		return nil
	}
	key := pieceKey{pc: pc, name: v.Name, decl: v.DeclLine, typ: typeOf(v), shadowed: v.Flags&proc.VariableShadowed != 0}
	return c.get(key, func() *Dropped { return droppedOfVar(v) })
}

// Mark marks what d says was left out of av, a value as api.ConvertVar
// converts it, whatever was read there: the zeros Delve read, or what it
// failed to read through them. It returns av.
func (d *Dropped) Mark(av *api.Variable) *api.Variable {
	if d == nil {
		return av
	}
	if d.Whole || av.Kind == reflect.Struct && av.Value != "" && len(d.Parts) > 0 {
		// A struct Delve prints from its fields (a time.Time) has no
		// value without one of them.
		*av = api.Variable{Name: av.Name, Addr: av.Addr, Kind: av.Kind, Type: av.Type, RealType: av.RealType,
			Flags: av.Flags, LocationExpr: av.LocationExpr, DeclLine: av.DeclLine, Unreadable: partOptimizedAway}
		return av
	}
	if av.Unreadable != "" {
		return av
	}
	if d.Cap && av.Kind == reflect.Slice {
		av.Cap = capDropped
	}
	for i, p := range d.Parts {
		if i < len(av.Children) {
			p.Mark(&av.Children[i])
		}
	}
	return av
}

// capDropped is the capacity of a slice whose capacity was left out: the
// printers write it as an unreadable part.
const capDropped = -1

// capDroppedText is how a capacity left out prints, as Delve prints any
// part it could not read.
const capDroppedText = "(unreadable " + partOptimizedAway + ")"

// hasDroppedCap reports whether v, or a value in it, is a slice whose
// capacity was left out.
func hasDroppedCap(v *api.Variable) bool {
	if v.Kind == reflect.Slice && v.Cap == capDropped {
		return true
	}
	for i := range v.Children {
		if hasDroppedCap(&v.Children[i]) {
			return true
		}
	}
	return false
}

// delvePrints is Delve's printer's text of v, with the capacities left out
// written as printValue writes them.
func delvePrints(v *api.Variable) string {
	s := v.StringWithOptions("", "", api.PrettyShortenType)
	if hasDroppedCap(v) {
		s = strings.ReplaceAll(s, "cap: "+strconv.Itoa(capDropped)+",", "cap: "+capDroppedText+",")
	}
	return s
}

// fakeAddress is where Delve's addresses of values composed from pieces
// start (proc's fakeAddressUnresolv, below proc.FakeAddressBase).
const fakeAddress = 0xbeed000000000000

// droppedOfExpr is what the compiler left out of the value of expr in
// scope, where expr names a part of a variable (p.b, xs[0].name, p.arr[i],
// a promoted field): Delve reads that part through the variable's pieces,
// but gives the part no location of its own. nil if nothing, or if expr is
// anything else (the variable itself, which convertVar marks, or a value
// Delve computes).
func droppedOfExpr(scope *proc.EvalScope, expr string) *Dropped {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil
	}
	root, path := partPath(e)
	if root == nil || len(path) == 0 {
		return nil
	}
	v, err := scope.EvalExpression(root.Name, proc.LoadConfig{})
	if err != nil {
		return nil
	}
	return droppedAlong(droppedOfVar(v), typeOf(v), path)
}

func typeOf(v *proc.Variable) godwarf.Type {
	if v.RealType != nil {
		return v.RealType
	}
	return v.DwarfType
}

// partPath splits e, a chain of fields and indexes of a variable, into the
// variable and the parts named, from the variable out. root is nil if e is
// anything else.
func partPath(e ast.Expr) (root *ast.Ident, path []ast.Expr) {
	for {
		switch x := e.(type) {
		case *ast.ParenExpr:
			e = x.X
		case *ast.SelectorExpr:
			path = append(path, x)
			e = x.X
		case *ast.IndexExpr:
			path = append(path, x)
			e = x.X
		case *ast.Ident:
			slices.Reverse(path)
			return x, path
		default:
			return nil, nil
		}
	}
}

// droppedAlong follows path (as partPath gives it) from a variable of type
// typ of which d is left out, to what is left out of the part path names.
// Where it cannot tell which part path reads (an index Delve computes, a
// selector that is no field of a struct), a value left out in part is left
// out whole: the part read may be one of those left out.
func droppedAlong(d *Dropped, typ godwarf.Type, path []ast.Expr) *Dropped {
	whole := &Dropped{Whole: true}
	for _, part := range path {
		if d == nil || d.Whole {
			return d
		}
		typ = godwarf.ResolveTypedef(typ)
		switch x := part.(type) {
		case *ast.SelectorExpr:
			st, ok := typ.(*godwarf.StructType)
			if !ok {
				// A pointer followed to memory, an interface's data, a
				// method: what is left out of this value may be read.
				return whole
			}
			var ok2 bool
			d, typ, ok2 = fieldPath(st, x.Sel.Name, d)
			if !ok2 {
				return whole
			}
		case *ast.IndexExpr:
			at, ok := typ.(*godwarf.ArrayType)
			if !ok {
				// A slice's elements are in memory, read through its
				// pointer and length; only its capacity may be left out
				// without them (else d is whole, above).
				if _, isSlice := typ.(*godwarf.SliceType); isSlice && d.Cap && len(d.Parts) == 0 {
					return nil
				}
				return whole // a map's, a string's, a pointer's
			}
			k, isConst := constIndex(x.Index)
			if !isConst {
				// Any element may be read: left out if one is.
				return whole
			}
			d, typ = d.Parts[k], at.Type
		}
	}
	return d
}

// fieldPath is what d, of a struct st, leaves out of its field name, a
// field of st's own or one promoted from an embedded field, and the field's
// type. ok is false if st has no such field or more than one at the
// shallowest depth (Go would refuse it; so does this).
func fieldPath(st *godwarf.StructType, name string, d *Dropped) (_ *Dropped, _ godwarf.Type, ok bool) {
	type level struct {
		st *godwarf.StructType
		d  *Dropped
	}
	for cur := []level{{st, d}}; len(cur) > 0; {
		var next []level
		var found []level
		var foundTyp godwarf.Type
		for _, l := range cur {
			for i, f := range l.st.Field {
				var fd *Dropped
				if l.d != nil {
					if l.d.Whole {
						fd = l.d
					} else {
						fd = l.d.Parts[i]
					}
				}
				if f.Name == name {
					found = append(found, level{nil, fd})
					foundTyp = f.Type
					continue
				}
				if !f.Embedded {
					continue
				}
				// Fields promoted through an embedded pointer are in
				// memory, where nothing is left out, if the pointer is
				// not.
				switch et := godwarf.ResolveTypedef(f.Type).(type) {
				case *godwarf.StructType:
					next = append(next, level{et, fd})
				case *godwarf.PtrType:
					if pst, isStruct := godwarf.ResolveTypedef(et.Type).(*godwarf.StructType); isStruct && fd == nil {
						next = append(next, level{pst, nil})
						continue
					}
					next = append(next, level{nil, fd})
				default:
					next = append(next, level{nil, fd})
				}
			}
		}
		switch len(found) {
		case 1:
			return found[0].d, foundTyp, true
		case 0:
		default:
			return nil, nil, false
		}
		// A field not found at this depth: deeper, through embedded
		// structs; one that cannot be searched (an embedded interface, a
		// pointer left out) leaves the answer unknown.
		cur = nil
		for _, l := range next {
			if l.st == nil {
				if l.d == nil {
					continue
				}
				return nil, nil, false
			}
			cur = append(cur, l)
		}
	}
	return nil, nil, false
}

// constIndex reads an index that is an integer literal.
func constIndex(e ast.Expr) (int, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.INT {
		return 0, false
	}
	k, err := strconv.ParseInt(strings.ReplaceAll(lit.Value, "_", ""), 0, 64)
	if err != nil {
		return 0, false
	}
	return int(k), true
}
