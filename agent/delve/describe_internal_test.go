package delve

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestDescribeFloats: what a probed instruction does to the floating-point
// registers, which the capture reads after it ran. A scalar float
// instruction writes its first operand only; one that may write others, or
// load the whole state, hides them all; an integer one none.
func TestDescribeFloats(t *testing.T) {
	for _, c := range []struct {
		name   string
		code   []byte
		xmm    int
		floats bool
	}{
		{"MOVSD const(RIP), X1", []byte{0xf2, 0x0f, 0x10, 0x0d, 0x8a, 0x10, 0x03, 0x00}, 1, false},
		{"MULSD X2, X0", []byte{0xf2, 0x0f, 0x59, 0xc2}, 0, false},
		{"XORPS X3, X3", []byte{0x0f, 0x57, 0xdb}, 3, false},
		{"MOVQ CX, AX", []byte{0x48, 0x89, 0xc8}, -1, false},
		{"MOVSD X0, 0x20(SP)", []byte{0xf2, 0x0f, 0x11, 0x44, 0x24, 0x20}, -1, false},
		{"PCMPESTRM $0, X2, X1", []byte{0x66, 0x0f, 0x3a, 0x60, 0xca, 0x00}, -1, true},
		{"FXRSTOR64 (AX)", []byte{0x48, 0x0f, 0xae, 0x08}, -1, true},
	} {
		in, err := x86asm.Decode(c.code, 64)
		if err != nil || in.Len != len(c.code) {
			t.Fatalf("%s: decoding % x: %v (%d bytes)", c.name, c.code, err, in.Len)
		}
		fi := describe(in)
		if fi.xmm != c.xmm || fi.floats != c.floats {
			t.Errorf("%s (%v): writes XMM %d, all floats %v; want %d, %v", c.name, in, fi.xmm, fi.floats, c.xmm, c.floats)
		}
	}
}
