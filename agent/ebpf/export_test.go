package ebpf

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/internal/dlvvalue"
	"github.com/riptrace/riptrace/fleet"
)

func init() {
	verifyStacks = true
	dlvvalue.CheckPrinter(true)
}

// VerifyStacks sets whether the targets attached from now on check each
// stack read from their cache, and each hit's values read by the direct
// decoder and printed without Delve's printer, against Delve's; tests do,
// benchmarks not.
func VerifyStacks(on bool) {
	verifyStacks = on
	dlvvalue.CheckPrinter(on)
}

// Loaded reports whether the debug info of pid's executable is loaded,
// held by a target or parked.
func Loaded(pid int) bool {
	key, err := keyOf(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	executables.Lock()
	x := executables.m[key]
	executables.Unlock()
	if x == nil {
		return false
	}
	select {
	case <-x.loaded:
		return x.bi != nil
	default:
		return false
	}
}

// Prepared reports whether a target of pid is prepared (see Preload).
func Prepared(pid int) bool {
	key, err := keyOf(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	executables.Lock()
	defer executables.Unlock()
	x := executables.m[key]
	return x != nil && x.prep[pid] != nil
}

// PreparedAny reports whether any executable holds a prepared target of
// pid, which may have exited.
func PreparedAny(pid int) bool {
	executables.Lock()
	defer executables.Unlock()
	for _, x := range executables.m {
		if x.prep[pid] != nil {
			return true
		}
	}
	return false
}

// Preparing reports whether Preload is opening a target of pid.
func Preparing(pid int) bool {
	executables.Lock()
	defer executables.Unlock()
	_, ok := executables.preparing[pid]
	return ok
}

// ForgetParked forgets every parked executable now, as their time running
// out would.
func ForgetParked() {
	executables.Lock()
	defer executables.Unlock()
	for len(executables.parked) > 0 {
		x := executables.parked[0]
		x.unparkLocked()
		x.forgetLocked()
	}
}

// CachedStacks counts the hits of tgt whose stack was read from its stack
// cache.
func CachedStacks(tgt agent.Target) int {
	t := tgt.(*target)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stacks.Cached
}

// DirectReads counts what tgt's direct decoder read: the frames, and their
// variables read directly and by Delve's evaluator.
func DirectReads(tgt agent.Target) (frames, direct, delve int) {
	t := tgt.(*target)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.direct.Frames, t.direct.Direct, t.direct.Delve
}

// QuickStacks counts the hits of tgt whose stack was read from its stack
// cache without Delve's walk of the top frame.
func QuickStacks(tgt agent.Target) int {
	t := tgt.(*target)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stacks.Quicker
}

// CorruptDirect has tgt alter, by f, each hit of which its direct decoder
// decoded a value, as a bug of the decoder would.
func CorruptDirect(tgt agent.Target, f func(*fleet.Hit)) {
	t := tgt.(*target)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.corruptDirect = f
}

// HoldDecoding keeps tgt's executable from decoding hits until release is
// called: the hits recorded meanwhile are decoded after it.
func HoldDecoding(tgt agent.Target) (release func()) {
	t := tgt.(*target)
	t.mu.Lock()
	return t.mu.Unlock
}

// ArmingCounts returns a function that reads, without tgt's lock, the BPF
// rate limit of tracepoint id: the hits that met it since its probes last
// went in, and whether its allowance is spent.
func ArmingCounts(tgt agent.Target, id string) func() (seen uint64, spent bool, err error) {
	t := tgt.(*target)
	t.mu.Lock()
	bk := t.tps[id].bucket
	t.mu.Unlock()
	return func() (uint64, bool, error) {
		var b bpfBucket
		err := t.coll.Maps["buckets"].Lookup(bk, &b)
		return b.Seen, b.Spent != 0, err
	}
}

// DelayAttach holds back each attach of tgt's probes by d from now on, as
// a loaded kernel does.
func DelayAttach(tgt agent.Target, d time.Duration) {
	t := tgt.(*target)
	t.armMu.Lock()
	t.armDelay = d
	t.armMu.Unlock()
}

// HoldScratch marks every CPU's scratch of tgt busy, as a run of the
// capture program preempted mid-record would leave it, until release is
// called: the hits meanwhile must be dropped and counted, never copied.
// Call it while no hit is being captured (before any tracepoint is set):
// it writes the scratch whole.
func HoldScratch(tgt agent.Target) (release func() error, err error) {
	t := tgt.(*target)
	m := t.coll.Maps["scratch"]
	busy := func(v uint64) error {
		var cpus [][]byte
		if err := m.Lookup(uint32(0), &cpus); err != nil {
			return err
		}
		for _, c := range cpus {
			binary.LittleEndian.PutUint64(c, v)
		}
		return m.Update(uint32(0), cpus, 0)
	}
	if err := busy(1); err != nil {
		return nil, err
	}
	return func() error { return busy(0) }, nil
}

// TrapCost returns what a uprobe trap costs a thread here (trapCost,
// measured once in the test binary), and what a call of the function it
// probes costs with no probe (the median of batches of n calls).
func TrapCost(batches, n int) (probed, bare time.Duration, err error) {
	probed, err = trapCost()
	bareRuns := trapRuns(batches, n)
	slices.Sort(bareRuns)
	return probed, bareRuns[len(bareRuns)/2], err
}

// HitCost is what a hit with the probes in is taken to cost (hitCost).
func HitCost() time.Duration { return hitCost() }
