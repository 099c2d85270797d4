package dlvvalue

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/go-delve/delve/pkg/proc"

	"github.com/riptrace/riptrace/fleet"
)

// StackCache reads the stacks of hits in one process from what Delve's own
// stack walks found there before. Below the frame a hit landed in, a
// frame is told by its return address alone: how far above its stack
// pointer its caller's frame starts (its CFA) and which calls Delve reports
// for it, inlined ones included. So once Delve has walked through a return
// address, the stack of a later hit that passes through it is a few reads
// of return addresses from the hit's memory rather than a walk through
// DWARF's frame tables and inlining trees for every frame (a sixth of what
// decoding a hit cost, for 8 frames).
//
// Only what Delve walked through in the plain way is remembered: ordinary
// Go frames, each the caller of the one above, with its return address
// where the frame says, down to runtime.goexit. Anything else, a frame
// seen for the first time or a return address the hit's memory does not
// have, and the hit's stack is Delve's, which is then learned from.
//
// A StackCache is not safe for concurrent use.
type StackCache struct {
	// Verify has every stack read from the cache read by Delve too, and
	// panics if they differ: tests set it.
	Verify bool
	// Cached counts the stacks read from the cache, Quicker those of them
	// read without Delve's walk of the top frame.
	Cached, Quicker int
	frames          map[uint64]*cachedFrame // by return address
	// misses counts, by the PC of the hit, the stacks read there since the
	// cache last told one. A line reached only through frames it does not
	// learn stops paying for the attempt, but for one in maxMisses hits, in
	// case its callers change.
	misses map[uint64]int
	// tops are the top physical frames of hits, by PC (see Quick).
	tops map[uint64]*cachedTop
	// scratch is where Quick assembles a stack before it copies it out
	// at its size: made at the deepest it may be, each stack took 480
	// bytes for the 4 frames of make bench's hot loop, a sixth of what
	// the eBPF agent allocated per hit.
	scratch []fleet.Frame
}

// cachedTop is what Delve's walks made of the top physical frame of the
// hits at one PC: where its caller's frame starts, above SP, and the calls
// it holds. It is used once two walks agree on it.
type cachedTop struct {
	size   uint64        // its CFA less SP
	frames []fleet.Frame // innermost first, as Place writes them
	// last is the last stack Quick read through it, which the next hit
	// shares if its stack is the same: nothing changes a hit's stack
	// once read, and a copy for each was 180 B of the 1.3 kB the eBPF
	// agent allocated per hit on make bench's hot loop.
	last      []fleet.Frame
	inlined   bool // the innermost is an inlined call
	confirmed bool
	differ    bool // two walks did not agree: never used
}

// maxMisses is how many stacks in a row at one PC the cache fails to tell
// before it is asked only now and then.
const maxMisses = 8

// cachedFrame is what Delve made of a physical frame below the top one.
type cachedFrame struct {
	size   uint64        // its CFA less its stack pointer
	frames []fleet.Frame // the calls it holds, innermost first, as Place writes them
	bottom bool          // runtime.goexit: the walk ends with it
}

// maxCachedFrames bounds the memory of a StackCache: a process has that
// many distinct return addresses on its hits' stacks only if it is traced
// on many lines of a large program.
const maxCachedFrames = 4096

// Stack is the package's Stack, reading from the cache where it can. word
// reads a word of the hit's memory without side effects, false if the hit
// does not have it.
func (sc *StackCache) Stack(tgt *proc.Target, th proc.Thread, c fleet.Capture, h *fleet.Hit, file string, line int, word func(addr uint64) (uint64, bool)) ([]proc.Stackframe, *proc.G) {
	var pc uint64
	if regs, err := th.Registers(); err == nil {
		pc = regs.PC()
	}
	if c.StackDepth <= 0 {
		frames, g := Stack(tgt, th, c, h, file, line)
		sc.learnTop(pc, frames, g)
		return frames, g
	}
	m := sc.misses[pc]
	if len(sc.frames) > 0 && (m < maxMisses || m%maxMisses == 0) {
		if top, g, stack, ok := sc.fast(tgt, th, min(c.StackDepth, fleet.MaxStackDepth), word); ok {
			sc.learnTop(pc, top, g)
			delete(sc.misses, pc)
			if sc.Verify {
				var want fleet.Hit
				Stack(tgt, th, c, &want, file, line)
				if !reflect.DeepEqual(stack, want.Stack) || top[0].Call.File != want.File || top[0].Call.Line != want.Line || fnName(top[0].Call.Fn) != want.Function {
					panic(fmt.Sprintf("the cached stack differs from Delve's:\n got %+v\nwant %+v", stack, want.Stack))
				}
			}
			sc.Cached++
			Place(h, top[:1], false)
			h.Stack = stack
			h.Goroutine = g.ID
			return top, g
		}
	}
	if len(sc.frames) > 0 && (m > 0 || len(sc.misses) < maxCachedFrames) {
		if sc.misses == nil {
			sc.misses = make(map[uint64]int)
		}
		sc.misses[pc] = m + 1
	}
	frames, g := Stack(tgt, th, c, h, file, line)
	sc.learn(frames, g, word)
	sc.learnTop(pc, frames, g)
	return frames, g
}

// Quick reads the stack of a hit at pc, with stack pointer sp, on the
// goroutine of id goid, from the cache alone: without Delve's walk of the
// top frame, nor its reading of the goroutine, which only Delve's
// evaluator needs (a sixth of what decoding a hit cost). ok is false where
// it cannot tell; inlined says the hit is in an inlined call.
func (sc *StackCache) Quick(tgt *proc.Target, th proc.Thread, c fleet.Capture, h *fleet.Hit, file string, line int, pc, sp uint64, goid int64, word func(addr uint64) (uint64, bool)) (inlined, ok bool) {
	ct := sc.tops[pc]
	if ct == nil || !ct.confirmed || ct.differ || goid == 0 {
		return false, false
	}
	var stack []fleet.Frame
	if c.StackDepth > 0 {
		depth := min(c.StackDepth, fleet.MaxStackDepth)
		stack = append(sc.scratch[:0], ct.frames...)
		cfa := sp + ct.size
		ret, found := word(cfa - 8)
		if !found {
			return false, false
		}
		if stack, ok = sc.below(stack, cfa, ret, depth, word); !ok {
			return false, false
		}
		sc.scratch = stack[:0]
		if !slices.Equal(stack, ct.last) {
			ct.last = slices.Clone(stack)
		}
		stack = ct.last
	}
	if sc.Verify {
		var want fleet.Hit
		Stack(tgt, th, c, &want, file, line)
		if !reflect.DeepEqual(stack, want.Stack) || ct.frames[0].File != want.File || ct.frames[0].Line != want.Line || ct.frames[0].Function != want.Function || goid != want.Goroutine {
			panic(fmt.Sprintf("the cached stack differs from Delve's:\n got %+v goroutine %d\nwant %+v goroutine %d", stack, goid, want.Stack, want.Goroutine))
		}
	}
	sc.Cached++
	sc.Quicker++
	h.File, h.Line, h.Function = ct.frames[0].File, ct.frames[0].Line, ct.frames[0].Function
	h.Stack = stack
	h.Goroutine = goid
	return ct.inlined, true
}

// learnTop remembers the top physical frame of a stack Delve walked at pc.
func (sc *StackCache) learnTop(pc uint64, frames []proc.Stackframe, g *proc.G) {
	if g == nil || g.SystemStack || len(frames) == 0 {
		return
	}
	concrete := -1
	for i, f := range frames {
		if f.Err != nil || f.Call.Fn == nil {
			return
		}
		if !f.Inlined {
			concrete = i
			break
		}
	}
	if concrete < 0 || frames[concrete].SystemStack || frames[concrete].Current.Fn == nil || !plain(frames[concrete].Current.Fn.Name) || frames[concrete].Current.PC != pc {
		return
	}
	f := &frames[concrete]
	ct := &cachedTop{size: uint64(f.Regs.CFA) - f.Regs.SP(), inlined: concrete > 0}
	for _, fr := range frames[:concrete+1] {
		ct.frames = append(ct.frames, frameOf(fr))
	}
	old := sc.tops[pc]
	switch {
	case old == nil:
		if len(sc.tops) >= maxCachedFrames {
			return
		}
		if sc.tops == nil {
			sc.tops = make(map[uint64]*cachedTop)
		}
		sc.tops[pc] = ct
	case old.size == ct.size && old.inlined == ct.inlined && reflect.DeepEqual(old.frames, ct.frames):
		old.confirmed = true
	default:
		old.differ = true
	}
}

// fast reads the stack from the cache: the frames Delve reads for the top
// physical frame, the goroutine, and the hit's stack as Place writes it.
// ok is false where the cache cannot tell.
func (sc *StackCache) fast(tgt *proc.Target, th proc.Thread, depth int, word func(uint64) (uint64, bool)) (top []proc.Stackframe, g *proc.G, stack []fleet.Frame, ok bool) {
	// Delve's walk to depth 0 stops after the top physical frame, with
	// all the calls inlined into it.
	top, err := proc.ThreadStacktrace(tgt, th, 0)
	if err != nil || len(top) == 0 {
		return nil, nil, nil, false
	}
	g, err = proc.GetG(th)
	if err != nil || g == nil || g.SystemStack {
		return nil, nil, nil, false
	}
	concrete := -1
	for i, f := range top {
		if f.Err != nil || f.Call.Fn == nil {
			return nil, nil, nil, false
		}
		if !f.Inlined {
			concrete = i
			break
		}
	}
	if concrete < 0 || top[concrete].SystemStack || !plain(top[concrete].Current.Fn.Name) {
		return nil, nil, nil, false
	}
	stack = make([]fleet.Frame, 0, depth+2)
	for _, f := range top[:concrete+1] {
		stack = append(stack, frameOf(f))
	}
	stack, ok = sc.below(stack, uint64(top[concrete].Regs.CFA), top[concrete].Ret, depth, word)
	if !ok {
		return nil, nil, nil, false
	}
	return top[:concrete+1], g, stack, true
}

// below appends to stack, the frames of the top physical frame, those
// below it, from the cache: cfa is the top frame's CFA and ret its return
// address.
func (sc *StackCache) below(stack []fleet.Frame, cfa, ret uint64, depth int, word func(uint64) (uint64, bool)) ([]fleet.Frame, bool) {
	// Delve counts frames after each physical frame, with all its inlined
	// calls: so do we.
	for below := false; len(stack) < depth+1; below = true {
		if ret == 0 {
			return nil, false
		}
		if r, ok := word(cfa - 8); !ok || r != ret {
			return nil, false
		}
		cf := sc.frames[ret]
		if cf == nil {
			return nil, false
		}
		if below && !cf.bottom && !framePointer(cfa, cfa+cf.size, word) {
			return nil, false
		}
		stack = append(stack, cf.frames...)
		if cf.bottom {
			break
		}
		cfa += cf.size
		var ok bool
		if ret, ok = word(cfa - 8); !ok {
			return nil, false
		}
	}
	return stack, true
}

// learn remembers the physical frames below the top one of a stack Delve
// walked, as far as they are plain Go frames each called by the next.
func (sc *StackCache) learn(frames []proc.Stackframe, g *proc.G, word func(uint64) (uint64, bool)) {
	if g == nil || g.SystemStack || len(sc.frames) >= maxCachedFrames {
		return
	}
	if sc.frames == nil {
		sc.frames = make(map[uint64]*cachedFrame)
	}
	var above *proc.Stackframe // the concrete frame of the physical frame above
	concreteTop := -1          // the index of the top physical frame's concrete frame
	for i := 0; i < len(frames); {
		j := i
		for j < len(frames) && frames[j].Inlined && frames[j].Err == nil && frames[j].Call.Fn != nil {
			j++
		}
		if j == len(frames) || frames[j].Err != nil || frames[j].Call.Fn == nil || frames[j].Current.Fn == nil || frames[j].SystemStack {
			return
		}
		f := &frames[j]
		name := f.Current.Fn.Name
		// Delve ends its walk at runtime.goexit, with an error frame after
		// it when the hit did not copy goexit's return address: Place
		// stops there either way.
		bottom := name == "runtime.goexit" && f.Bottom && above != nil && (j == len(frames)-1 || j == len(frames)-2 && frames[j+1].Err != nil)
		if !bottom && !plain(name) {
			return
		}
		if above != nil {
			// f is the caller of above, found where above's frame keeps
			// its return address.
			cfa := uint64(above.Regs.CFA)
			if f.Current.PC != above.Ret || f.Regs.SP() != cfa || uint64(f.Regs.CFA) < cfa {
				return
			}
			if r, ok := word(cfa - 8); !ok || r != above.Ret {
				return
			}
			// goexit has no frame of its own, and the walk ends there.
			if above != &frames[concreteTop] && !bottom && !framePointer(cfa, uint64(f.Regs.CFA), word) {
				return
			}
			if sc.frames[above.Ret] == nil {
				cf := &cachedFrame{size: uint64(f.Regs.CFA) - f.Regs.SP(), bottom: bottom}
				for _, fr := range frames[i : j+1] {
					cf.frames = append(cf.frames, frameOf(fr))
				}
				sc.frames[above.Ret] = cf
			}
		}
		if bottom {
			return
		}
		if above == nil {
			concreteTop = j
		}
		above = f
		i = j + 1
	}
}

// framePointer reports whether the frame whose CFA is cfa, below one whose
// CFA is calleeCFA, keeps its frame pointer where Go's frames do: two words
// under its CFA, as its callee saved it. Delve's walk follows frame pointers
// where they hold, so a frame size learned from it is the function's own
// only where they do. The top frame, which may have no frame of its own,
// is not asked.
func framePointer(calleeCFA, cfa uint64, word func(uint64) (uint64, bool)) bool {
	bp, ok := word(calleeCFA - 16)
	return ok && bp == cfa-16
}

// plain reports whether a function's frames are walked in the plain way.
// Delve's walk treats some of the runtime's by name (they switch stacks,
// are entered by a signal or end the stack), and the assembly stubs that
// call Go code through reflection build frames of their own.
func plain(fn string) bool {
	return !special[fn] && !strings.HasPrefix(fn, "runtime.call") && !strings.HasPrefix(fn, "reflect.")
}

// special are the functions Delve's stack walk (proc's stack.go and
// amd64_arch.go, v1.27) treats by name.
var special = map[string]bool{
	"crosscall2": true, "runtime.asmcgocall": true, "runtime.cgocallback": true, "runtime.cgocallback_gofunc": true,
	"runtime.goexit": true, "runtime.goexit0": true, "runtime.goexit1": true, "runtime.mcall": true,
	"runtime.mstart": true, "runtime.mstart0": true, "runtime.mstart1": true, "runtime.newstack": true,
	"runtime.morestack": true, "runtime.rt0_go": true, "runtime.sigpanic": true, "runtime.sigreturn": true,
	"runtime.sigtrampgo": true, "runtime.systemstack": true, "runtime.systemstack_switch": true,
}

// frameOf is a frame of the hit's stack, as Place writes it.
func frameOf(f proc.Stackframe) fleet.Frame {
	return fleet.Frame{File: f.Call.File, Line: f.Call.Line, PC: f.Call.PC, Function: fnName(f.Call.Fn)}
}

func fnName(fn *proc.Function) string {
	if fn == nil {
		return ""
	}
	return fn.Name
}
