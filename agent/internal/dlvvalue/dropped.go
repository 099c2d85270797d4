package dlvvalue

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"strconv"
	"strings"

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
	if v.Flags&proc.VariableFakeAddress == 0 || v.LocationExpr == nil || v.Unreadable != nil {
		return nil
	}
	typ := v.RealType
	if typ == nil {
		typ = v.DwarfType
	}
	return DroppedOf(typ, v.LocationExpr.String())
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
// scope, where expr names a part of a variable (p.b, xs[0].name): Delve
// reads that part through the variable's pieces, but gives the part no
// location of its own. nil if nothing, or if expr is anything else.
func droppedOfExpr(scope *proc.EvalScope, expr string) *Dropped {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil
	}
	// The parts named, from the variable out.
	var path []ast.Expr
	for {
		switch x := e.(type) {
		case *ast.ParenExpr:
			e = x.X
			continue
		case *ast.SelectorExpr:
			path = append(path, x)
			e = x.X
			continue
		case *ast.IndexExpr:
			path = append(path, x)
			e = x.X
			continue
		case *ast.Ident:
		default:
			return nil
		}
		break
	}
	if len(path) == 0 {
		return nil // the variable itself: convertVar marks it
	}
	v, err := scope.EvalExpression(e.(*ast.Ident).Name, proc.LoadConfig{})
	if err != nil {
		return nil
	}
	d := droppedOfVar(v)
	typ := v.RealType
	for i := len(path) - 1; i >= 0 && d != nil; i-- {
		if d.Whole {
			return d // a part of a part left out
		}
		typ = godwarf.ResolveTypedef(typ)
		switch x := path[i].(type) {
		case *ast.SelectorExpr:
			st, ok := typ.(*godwarf.StructType)
			if !ok {
				return nil // a method, a package's name, a pointer followed
			}
			k := slices.IndexFunc(st.Field, func(f *godwarf.StructField) bool { return f.Name == x.Sel.Name })
			if k < 0 {
				return nil // promoted from an embedded field: not followed
			}
			d, typ = d.Parts[k], st.Field[k].Type
		case *ast.IndexExpr:
			at, ok := typ.(*godwarf.ArrayType)
			lit, isLit := x.Index.(*ast.BasicLit)
			if !ok || !isLit || lit.Kind != token.INT {
				return nil // a slice's element, in memory; or an index Delve computes
			}
			k, err := strconv.Atoi(lit.Value)
			if err != nil {
				return nil
			}
			d, typ = d.Parts[k], at.Type
		}
	}
	return d
}
