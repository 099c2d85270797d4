package ebpf

// The conversion from Delve's values to the hit's tree below is the Delve
// backend's (agent/delve/capture.go), so that both backends render a value
// the same way; the differential tests hold them to it. It differs where a
// value was not copied by the BPF program: that reads "<not captured: …>".

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"

	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
	"github.com/riptrace/riptrace/agent/internal/snapshot"
	"github.com/riptrace/riptrace/agent/internal/uprobes"

	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/service/api"

	"github.com/riptrace/riptrace/fleet"
)

// capture reads what tp asks for from the snapshot of one hit; keep is false
// when tp's condition does not hold, err says why it cannot be decided.
func (t *target) capture(tp *tracepoint) (h fleet.Hit, keep bool, err error) {
	tgt := t.tgt
	th := t.snap.Thread()
	// Its time is the record's, which hit sets.
	h = fleet.Hit{Tracepoint: tp.spec.ID, Pid: t.pid}
	// The scope is made when Delve's evaluator needs it: a hit whose
	// values the direct decoder reads needs no walk of its top frame.
	hs := t.hitScope()
	inlined, quick := false, false
	if tp.spec.Condition == "" {
		inlined, quick = t.stacks.Quick(tgt, th, tp.spec.Capture, &h, tp.file, tp.spec.Location.Line, t.regs.Rip, t.regs.Rsp, t.goid(), t.mem.word)
	}
	if !quick {
		hs.frames, hs.g = t.stacks.Stack(tgt, th, tp.spec.Capture, &h, tp.file, tp.spec.Location.Line, t.mem.word)
		if hs.frames == nil {
			return h, tp.spec.Condition == "", nil
		}
		inlined = hs.frames[0].Inlined
	}
	scopeOf := t.scopeOf
	if tp.spec.Condition != "" {
		scope, _ := scopeOf()
		if tp.condUndecided[t.regs.Rip] && scope != nil {
			delete(tp.condUndecided, t.regs.Rip)
			if err := dlvvalue.CondDroppedInScope(scope, tp.spec.Condition); err != nil {
				return h, false, fleet.Errorf(fleet.CodeBadCondition, "tracepoint %s was removed: %v", tp.spec.ID, err)
			}
		}
		// Only the reads of the condition's own evaluation decide it: the
		// stack walk above may have missed frames it does not need.
		before := len(t.mem.misses)
		v, err := scope.EvalExpression(tp.spec.Condition, proc.LoadConfig{})
		if err == nil && v.Unreadable != nil {
			err = v.Unreadable
		}
		if err == nil && len(t.mem.misses) > before {
			// Delve may have read what it could not read as zero (see
			// markUncaptured): the result cannot be trusted.
			m := t.mem.misses[before]
			err = fmt.Errorf("%w: %d bytes at %#x", errNotCaptured, m.n, m.addr)
		}
		if err == nil && v.Kind != reflect.Bool {
			err = fmt.Errorf("it is a %s, not a boolean", v.Kind)
		}
		if err != nil {
			hint := ""
			if notCaptured(err.Error()) {
				hint = " (it reads memory the uprobe does not copy: trace it with the delve backend)"
			}
			return h, false, fleet.Errorf(fleet.CodeBadCondition, "condition %q of tracepoint %s failed at %s:%d: %v%s; the tracepoint was removed: fix the condition and set it again", tp.spec.Condition, tp.spec.ID, tp.file, tp.spec.Location.Line, err, hint)
		}
		if !constantTrue(v) {
			return h, false, nil
		}
	}
	delve := dlvvalue.Converter{Unreadable: unreadable, Check: t.fns.check, Warm: t.fns.warm, Pieces: &t.pieces, PC: t.regs.Rip}
	cv := delve
	cv.Frame = t.fns.frame
	var plan *framePlan
	if !inlined {
		plan = t.plans[t.regs.Rip]
		if plan != nil && !plan.ok {
			cv.Frame = nil
		}
	} else {
		// Delve reads an inlined call's variables from its own entry.
		cv.Frame = nil
	}
	hits := t.direct
	warm0 := tp.warm
	hd := h
	cv.ReadWarmScope(scopeOf, tp.spec.Capture, tp.load, tp.log, &h, &tp.warm)
	if cv.Frame == nil || t.direct.Frames == hits.Frames {
		return h, true, nil
	}
	decoded := t.direct.Decoded > hits.Decoded
	if decoded && t.corruptDirect != nil {
		c := h // h would escape to the heap for each hit
		t.corruptDirect(&c)
		h = c
	}
	if plan == nil {
		plan = t.plans[t.regs.Rip]
	}
	// Only a hit of which the direct decoder decoded a value checks it:
	// the first hits at a PC may have all their values read by Delve's
	// evaluator (an interface of a dynamic type not met yet), and the
	// checks spent on them would leave the decoder's values unchecked.
	if plan != nil && decoded && (verifyStacks || plan.checked < selfChecks) {
		// Held to Delve's values, read from the same snapshot.
		plan.checked++
		warm := warm0
		delve.ReadWarmScope(scopeOf, tp.spec.Capture, tp.load, tp.log, &hd, &warm)
		if diff := hitDiff(h, hd); diff != "" {
			if verifyStacks {
				panic("the direct decoder's values differ from Delve's: " + diff)
			}
			plan.ok = false
			return hd, true, nil
		}
	}
	return h, true, nil
}

// hitScope is the scope of the hit being decoded, made by get when
// Delve's evaluator first needs it, from the frames the stack was read
// with or from a walk of the top frame. The target keeps one, and the
// funcs capture hands Delve's converter, made once: made for each hit,
// they and what they kept were eight allocations a hit.
type hitScope struct {
	t      *target
	frames []proc.Stackframe
	g      *proc.G
	scope  *proc.EvalScope
	err    error
}

// hitFuncs are the funcs of a target that capture hands on.
type hitFuncs struct {
	check func(v *proc.Variable)
	warm  func(scope *proc.EvalScope)
	frame func(scopeOf dlvvalue.Scope, load proc.LoadConfig, args bool) ([]dlvvalue.Var, bool)
}

// hitScope returns the target's hitScope, cleared for a new hit.
func (t *target) hitScope() *hitScope {
	if t.hs == nil {
		t.hs = &hitScope{t: t}
		t.scopeOf = t.hs.get
		t.fns = hitFuncs{
			check: func(v *proc.Variable) { markUncaptured(t.mem.misses, v) },
			warm:  t.warmModuleData,
			frame: t.frameVars,
		}
	}
	*t.hs = hitScope{t: t}
	return t.hs
}

// get returns the scope of the hit's top frame, made at the first call.
func (s *hitScope) get() (*proc.EvalScope, error) {
	if s.scope != nil || s.err != nil {
		return s.scope, s.err
	}
	t := s.t
	th := t.snap.Thread()
	if s.frames == nil {
		top, err := proc.ThreadStacktrace(t.tgt, th, 0)
		if err != nil || len(top) == 0 {
			s.err = fmt.Errorf("reading the top frame: %v", err)
			return nil, s.err
		}
		s.frames = top
		s.g, _ = proc.GetG(th)
	}
	// Only the top frame: Delve would prefetch the caller's whole
	// frame too, which the probe copied only the links of.
	s.scope = proc.FrameToScope(t.tgt, th.ProcessMemory(), s.g, th.ThreadID(), s.frames[0])
	if !t.warmed {
		// Delve would load its module data through the hit's memory,
		// which does not serve it, and keeps it once loaded.
		t.warmed = true
		t.warmModuleData(s.scope)
	}
	return s.scope, nil
}

// warmModuleData is dlvvalue.WarmModuleData for a scope of a hit: its
// memory does not serve the global the warming reads, nor the module data
// among the globals, which are read live instead (snapshot's StartMemory).
func (t *target) warmModuleData(scope *proc.EvalScope) {
	s := *scope
	s.Mem = t.snap.StartMemory()
	dlvvalue.WarmModuleData(&s)
}

// hitDiff says how the values of two hits differ, "" if they do not.
func hitDiff(got, want fleet.Hit) string {
	switch {
	case !reflect.DeepEqual(got.Args, want.Args):
		return fmt.Sprintf("arguments\n got %+v\nwant %+v", got.Args, want.Args)
	case !reflect.DeepEqual(got.Locals, want.Locals):
		return fmt.Sprintf("locals\n got %+v\nwant %+v", got.Locals, want.Locals)
	case !reflect.DeepEqual(got.Trace, want.Trace):
		return fmt.Sprintf("trace context\n got %+v\nwant %+v", got.Trace, want.Trace)
	case !reflect.DeepEqual(got.Exprs, want.Exprs) || got.Message != want.Message || !reflect.DeepEqual(got.Errors, want.Errors):
		return fmt.Sprintf("expressions\n got %+v %q %q\nwant %+v %q %q", got.Exprs, got.Message, got.Errors, want.Exprs, want.Message, want.Errors)
	}
	return ""
}

// goid returns the id of the goroutine the hit's thread runs, read from
// its g as Delve's GetG reads it, or 0 where it cannot tell: no g copied,
// or the thread on a system stack (goid 0, or SP off the goroutine's
// stack), where Delve reads another goroutine's.
func (t *target) goid() int64 {
	if t.gLayout.size == 0 {
		t.gLayout = gLayoutOf(t.snap.BinInfo())
	}
	gl := t.gLayout
	if gl.size < 0 {
		return 0
	}
	b, ok := t.mem.bytes(t.regs.R14, gl.size)
	if !ok {
		return 0
	}
	le := binary.LittleEndian
	id := int64(le.Uint64(b[gl.goid:]))
	lo, hi := le.Uint64(b[gl.stackLo:]), le.Uint64(b[gl.stackHi:])
	if sp := t.regs.Rsp; sp < lo || sp >= hi {
		return 0
	}
	return id
}

// gLayout is where runtime.g keeps what goid reads.
type gLayout struct {
	size                   int64 // 0: not known yet; -1: not found
	goid, stackLo, stackHi int64
}

func gLayoutOf(bi *proc.BinaryInfo) gLayout {
	bad := gLayout{size: -1}
	typ, err := bi.FindType("runtime.g")
	if err != nil {
		return bad
	}
	st, ok := godwarf.ResolveTypedef(typ).(*godwarf.StructType)
	if !ok {
		return bad
	}
	gl := gLayout{size: st.Size(), goid: -1, stackLo: -1, stackHi: -1}
	for _, f := range st.Field {
		switch f.Name {
		case "goid":
			if f.Type.Size() == 8 {
				gl.goid = f.ByteOffset
			}
		case "stack":
			if s, ok := godwarf.ResolveTypedef(f.Type).(*godwarf.StructType); ok {
				for _, sf := range s.Field {
					switch sf.Name {
					case "lo":
						gl.stackLo = f.ByteOffset + sf.ByteOffset
					case "hi":
						gl.stackHi = f.ByteOffset + sf.ByteOffset
					}
				}
			}
		}
	}
	if gl.goid < 0 || gl.stackLo < 0 || gl.stackHi < 0 || gl.size <= 0 {
		return bad
	}
	return gl
}

// fakeAddress is where Delve's addresses of values composed from registers
// start (proc's fakeAddressUnresolv): their bytes were read with the
// registers, not from memory.
const fakeAddress = 0xbeed000000000000

// markUncaptured marks as not captured every part of v whose bytes Delve
// tried and failed to read from the hit (misses), and drops what it read
// through them. Delve reads some values whose memory it cannot read as
// zero instead of unreadable: an interface whose words were not copied
// comes out nil (readInterface takes the zero address of a failed read for
// a nil itab), and so does a map or a pointer. And it reads a struct, or
// the elements of an array, through one cache of all their bytes, so a
// struct copied short fails in every field, even in those that were copied:
// the failed read spans the whole struct. Checking each value's storage
// against the failed reads, rather than trusting Delve's flags, makes every
// such path read "<not captured: …>".
func markUncaptured(misses []span, v *proc.Variable) {
	if v.Unreadable != nil || len(misses) == 0 {
		return
	}
	if v.RealType != nil && v.Addr >= snapshot.NullPage && v.Addr < fakeAddress && v.Flags&proc.VariableFakeAddress == 0 {
		if size := v.RealType.Size(); size > 0 {
			at := span{v.Addr, uint64(size)}
			for _, m := range misses {
				if m.overlaps(at) {
					v.Unreadable = fmt.Errorf("%w: %d bytes at %#x", errNotCaptured, size, v.Addr)
					v.Value = nil
					v.Children = nil
					v.Len, v.Cap, v.Base = 0, 0, 0
					return
				}
			}
		}
	}
	for i := range v.Children {
		markUncaptured(misses, &v.Children[i])
	}
}

func constantTrue(v *proc.Variable) bool {
	return v.Value != nil && v.Value.String() == "true"
}

// notCaptured reports whether an unreadable reason comes from memory the
// probe did not copy.
func notCaptured(reason string) bool {
	return strings.Contains(reason, errNotCaptured.Error())
}

// unreadable names what the probe did not copy; other unreadable values
// are left to dlvvalue's rules.
func unreadable(v *api.Variable) (fleet.Variable, bool) {
	fv := fleet.Variable{Name: v.Name, Type: dlvvalue.ShortenType(v.Type)}
	switch {
	case v.Unreadable == "read out of bounds" && strings.Contains(strings.ToLower(v.LocationExpr), "xmm"):
		// In a floating-point register, which a uprobe's program does
		// not see; Delve says only that the register was empty.
		fv.Value = "<not captured: " + uprobes.KindName(v.Kind) + ">"
		fv.Unreadable = "the value is in a floating-point register at this line, which a uprobe cannot read; trace a line where it is in memory, or trace with the delve backend"
		return fv, true
	case notCaptured(v.Unreadable) && !strings.Contains(v.Unreadable, "module data"):
		// Not Delve's module data, which the hit's memory does not
		// serve: dlvvalue warms it and reads again (WarmModuleData).
		fv.Value = "<not captured: " + uprobes.KindName(v.Kind) + ">"
		fv.Unreadable = "the uprobe copied a bounded part of memory and not this " + uprobes.KindName(v.Kind) + "; raise the capture limits, or trace with the delve backend to read everything"
		return fv, true
	}
	return fleet.Variable{}, false
}
