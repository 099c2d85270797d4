package fleet

import "sync"

// A hit's arguments and locals are kept for the next hits once the agent
// has encoded the hit (ReleaseVariables): made fresh for each hit, they
// were over half of what the eBPF agent allocated per hit on make bench's
// hot loop, and its collections came as often. Only slices that
// NewVariables made are kept, at most maxKeptVariables of them.
var keptVariables struct {
	mu    sync.Mutex
	lists [][]Variable
}

const (
	maxKeptVariables = 4096
	keptVariablesCap = 16 // the capacity of the slices kept
)

// NewVariables returns an empty slice with room for n variables, for a
// hit's arguments or locals.
func NewVariables(n int) []Variable {
	if n > keptVariablesCap {
		return make([]Variable, 0, n)
	}
	keptVariables.mu.Lock()
	defer keptVariables.mu.Unlock()
	k := len(keptVariables.lists)
	if k == 0 {
		return make([]Variable, 0, keptVariablesCap)
	}
	vs := keptVariables.lists[k-1]
	keptVariables.lists[k-1] = nil
	keptVariables.lists = keptVariables.lists[:k-1]
	return vs
}

// ReleaseVariables gives back h's arguments and locals, which nothing
// may read any more (the agent calls it once it has encoded h for the
// stream), and leaves h without them.
func ReleaseVariables(h *Hit) {
	releaseVariables(h.Args)
	releaseVariables(h.Locals)
	h.Args, h.Locals = nil, nil
}

func releaseVariables(vs []Variable) {
	if cap(vs) != keptVariablesCap {
		// Not NewVariables', or grown since. (One of that capacity
		// made elsewhere is kept too: a hit's lists are its own.)
		return
	}
	// Only the part in use: past it, a kept slice is zero already (a
	// hit's lists only grow, by append). Clearing all 16 slots cost 3 %
	// of the agent's CPU on make bench's hot loop, the stores to lines
	// the decoding thread had written on another CPU; the agent alone
	// took 0.89x the CPU a hit with this (make bench-agent -vs, 12 runs
	// each). One cut shorter would keep values past its length until a
	// hit overwrote them: retained a while, never shown.
	clear(vs)
	keptVariables.mu.Lock()
	defer keptVariables.mu.Unlock()
	if len(keptVariables.lists) < maxKeptVariables {
		keptVariables.lists = append(keptVariables.lists, vs[:0])
	}
}
