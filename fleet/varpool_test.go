package fleet

import "testing"

// TestReleaseVariables: a hit's variables, given back, serve the next
// hit empty and cleared; slices NewVariables did not make are not kept.
func TestReleaseVariables(t *testing.T) {
	// The pool is the process's: start from an empty one.
	keptVariables.mu.Lock()
	keptVariables.lists = nil
	keptVariables.mu.Unlock()

	args := append(NewVariables(2), Variable{Name: "i", Value: "1"}, Variable{Name: "acc", Value: "7"})
	locals := append(NewVariables(1), Variable{Name: "x", Value: "8"})
	h := &Hit{Args: args, Locals: locals}
	ReleaseVariables(h)
	if h.Args != nil || h.Locals != nil {
		t.Fatalf("released hit still has %v, %v", h.Args, h.Locals)
	}
	for range 2 {
		vs := NewVariables(3)
		if len(vs) != 0 || cap(vs) != keptVariablesCap {
			t.Fatalf("NewVariables: len %d cap %d, want an empty slice of %d", len(vs), cap(vs), keptVariablesCap)
		}
		if got := vs[:cap(vs)]; got[0].Name != "" || got[0].Value != "" || got[1].Name != "" || got[1].Value != "" {
			t.Fatalf("a kept slice is not cleared: %+v", got[:2])
		}
		if &vs[:1][0] != &args[:1][0] && &vs[:1][0] != &locals[:1][0] {
			t.Fatal("NewVariables made a slice while two were kept")
		}
	}

	// Another's slice, or one grown past the kept size, is left alone.
	ReleaseVariables(&Hit{Args: make([]Variable, 1, 3), Locals: make([]Variable, 0, 2*keptVariablesCap)})
	keptVariables.mu.Lock()
	n := len(keptVariables.lists)
	keptVariables.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d slices kept from another's hit, want none", n)
	}
	if vs := NewVariables(keptVariablesCap + 1); cap(vs) != keptVariablesCap+1 {
		t.Fatalf("a large list: cap %d, want %d", cap(vs), keptVariablesCap+1)
	}
}
