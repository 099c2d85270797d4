package ebpf

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func decode(t *testing.T, code []byte) x86asm.Inst {
	t.Helper()
	in, err := x86asm.Decode(code, 64)
	if err != nil || in.Len != len(code) {
		t.Fatalf("decoding % x: %v (%d bytes)", code, err, in.Len)
	}
	return in
}

func regCells(fam, n int) []cell {
	cs := make([]cell, n)
	for i := range cs {
		cs[i] = cell{reg: fam, off: int64(i)}
	}
	return cs
}

func frameCells(off int64, n int) []cell {
	cs := make([]cell, n)
	for i := range cs {
		cs[i] = cell{reg: -1, off: off + int64(i)}
	}
	return cs
}

// TestSymbolicRun runs the instructions an optimized build emits around a
// call that takes a float (the floats target's fee line, and an inlined
// increment) and checks what the run knows of each byte: a spill copies a
// register's bytes to the frame, arithmetic makes its destination unknown,
// and the frame keeps what was spilled.
func TestSymbolicRun(t *testing.T) {
	st := newSymState()
	rax, x0 := regCells(0, 8), regCells(famXMM0, 8)
	atStart := map[string]cellVal{"rax": st.read(rax), "x0": st.read(x0)}
	for _, code := range [][]byte{
		{0x48, 0x89, 0x44, 0x24, 0x10},                         // MOVQ AX, 0x10(SP)
		{0xf2, 0x0f, 0x11, 0x44, 0x24, 0x28},                   // MOVSD X0, 0x28(SP)
		{0xf2, 0x0f, 0x10, 0x0d, 0x8a, 0x10, 0x03, 0x00},       // MOVSD const(RIP), X1
		{0xf2, 0x0f, 0x59, 0xc1},                               // MULSD X1, X0
		{0x48, 0xff, 0xc0},                                     // INCQ AX
		{0xf2, 0x0f, 0x10, 0x54, 0x24, 0x28},                   // MOVSD 0x28(SP), X2
		{0x66, 0x48, 0x0f, 0x7e, 0xd1},                         // MOVQ X2, CX
		{0x0f, 0x57, 0xdb},                                     // XORPS X3, X3
		{0x48, 0x85, 0xc0},                                     // TESTQ AX, AX
		{0xf2, 0x48, 0x0f, 0x2a, 0xd8},                         // CVTSI2SDQ AX, X3
		{0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00},                   // NOPW
		{0x48, 0x8d, 0x4c, 0x24, 0x48},                         // LEAQ 0x48(SP), CX
		{0xf2, 0x0f, 0x11, 0x4c, 0x24, 0x30},                   // MOVSD X1, 0x30(SP)
		{0x48, 0x89, 0x5c, 0x24, 0x18},                         // MOVQ BX, 0x18(SP)
		{0x48, 0x8b, 0x44, 0x24, 0x18},                         // MOVQ 0x18(SP), AX
		{0x48, 0xc7, 0x44, 0x24, 0x20, 0x01, 0x00, 0x00, 0x00}, // MOVQ $1, 0x20(SP)
	} {
		in := decode(t, code)
		if !plain(in) || !frameOnly(in) {
			t.Fatalf("%v: not a plain instruction that stores only to the frame", in)
		}
		st.step(in)
	}
	if got := st.read(frameCells(0x10, 8)); !got.equal(atStart["rax"]) {
		t.Errorf("the frame at 0x10 holds %v, want AX as it was", got)
	}
	if got := st.read(frameCells(0x28, 8)); !got.equal(atStart["x0"]) {
		t.Errorf("the frame at 0x28 holds %v, want X0 as it was", got)
	}
	if got := st.read(regCells(famXMM0+2, 8)); !got.equal(atStart["x0"]) {
		t.Errorf("X2, loaded from the spill, holds %v, want X0 as it was", got)
	}
	for what, cs := range map[string][]cell{
		"CX, which LEAQ wrote after MOVQ X2, CX":                            regCells(1, 8),
		"X0, which MULSD wrote":                                             x0,
		"the frame at 0x20, where an immediate was stored":                  frameCells(0x20, 8),
		"the frame at 0x30, where X1 was stored after a load of a constant": frameCells(0x30, 8),
	} {
		if got := st.read(cs); known(got) {
			t.Errorf("%s: holds %v, want unknown", what, got)
		}
	}
	// AX was made unknown by INCQ, then loaded from the frame where BX
	// was stored: it holds BX as it was.
	if got, bx := st.read(rax), newSymState().read(regCells(3, 8)); !got.equal(bx) {
		t.Errorf("AX holds %v, want BX as it was", got)
	}
}

func known(v cellVal) bool {
	for _, o := range v {
		if !o.known {
			return false
		}
	}
	return true
}

// TestRunBarriers: what transfers control, moves the stack pointer or
// stores outside the frame ends a straight run.
func TestRunBarriers(t *testing.T) {
	for _, c := range []struct {
		name      string
		code      []byte
		plain     bool
		frameOnly bool
	}{
		{"CALL", []byte{0xe8, 0x49, 0x00, 0x00, 0x00}, false, true},
		{"JLE", []byte{0x7e, 0x25}, false, true},
		{"PUSHQ BP", []byte{0x55}, false, true},
		{"SUBQ $0x18, SP", []byte{0x48, 0x83, 0xec, 0x18}, false, true},
		{"MOVQ AX, 0(BX)", []byte{0x48, 0x89, 0x03}, true, false},
		{"MOVSD X2, 0x40(AX)", []byte{0xf2, 0x0f, 0x11, 0x50, 0x40}, true, false},
		{"CQO", []byte{0x48, 0x99}, false, true},
		{"XCHGQ AX, BX", []byte{0x48, 0x93}, false, true},
	} {
		in := decode(t, c.code)
		if plain(in) != c.plain || frameOnly(in) != c.frameOnly {
			t.Errorf("%s: plain %v, frame only %v; want %v, %v", c.name, plain(in), frameOnly(in), c.plain, c.frameOnly)
		}
	}
}

// TestProved: a later PC may take the probe only if every value readable
// there is the one the line started with, and every store to the frame
// since wrote only such values.
func TestProved(t *testing.T) {
	st := newSymState()
	x0, rax := regCells(famXMM0, 8), regCells(0, 8)
	fv0 := &frameVars{vars: map[int]varLoc{
		1: {name: "amount", cells: x0},
		2: {name: "n", cells: rax, readable: true},
	}}
	at0 := map[int]cellVal{1: st.read(x0), 2: st.read(rax)}
	// MOVSD X0, 0x20(SP); MULSD X1, X0
	st.step(decode(t, []byte{0xf2, 0x0f, 0x11, 0x44, 0x24, 0x20}))
	st.step(decode(t, []byte{0xf2, 0x0f, 0x59, 0xc1}))
	spill := []stackRange{{0x20, 8}}
	at := func(amount, n []cell) *frameVars {
		return &frameVars{vars: map[int]varLoc{
			1: {name: "amount", cells: amount, readable: true},
			2: {name: "n", cells: n, readable: true},
		}}
	}
	if !at(frameCells(0x20, 8), rax).provedAgainst(fv0, at0, st, spill) {
		t.Error("amount spilled from X0 and n untouched: not proved")
	}
	if at(x0, rax).provedAgainst(fv0, at0, st, spill) {
		t.Error("amount read from X0 after MULSD wrote it: proved")
	}
	if at(frameCells(0x20, 8), rax).provedAgainst(fv0, at0, st, []stackRange{{0x20, 8}, {0x40, 8}}) {
		t.Error("a store to the frame where no proved value is: proved")
	}
	// INCQ AX: n is no longer what the line started with.
	st.step(decode(t, []byte{0x48, 0xff, 0xc0}))
	if at(frameCells(0x20, 8), rax).provedAgainst(fv0, at0, st, spill) {
		t.Error("n read from AX after INCQ wrote it: proved")
	}
	unreadN := at(frameCells(0x20, 8), rax)
	unreadN.vars[2] = varLoc{name: "n", cells: rax}
	if !unreadN.provedAgainst(fv0, at0, st, spill) {
		t.Error("n changed but not readable there, amount proved: not proved")
	}
}
