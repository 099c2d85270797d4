// Package ebpf is the uprobe backend of the agent: it traces any line of a
// Go program, with its arguments and locals, without ever stopping a thread.
//
// For a tracepoint at file:line it finds the line's PCs (inlined copies
// included) with Delve's binary info, and attaches a uprobe at each with
// github.com/cilium/ebpf. One BPF program (probe.c) serves every probe of a
// process: the probe's cookie selects its capture plan in a BPF map, built
// here from DWARF for that PC (where each variable lives, what its strings,
// slices and pointers lead to), and the program copies those bytes, the
// goroutine's g and the frame-pointer chain into a ring buffer. A token
// bucket in the program drops hits over the tracepoint's rate before they
// cost a copy.
//
// The program builds each record in a per-CPU buffer before it goes to the
// ring buffer. The kernel runs a uprobe's program with migration disabled
// but not preemption, and with no per-CPU recursion check as kprobes have:
// under a preemptible kernel (preempt=full or lazy) a run can be preempted
// mid-record and another thread, on the same CPU, hit a probe, and its run
// would overwrite the first one's half-built record, which would then mix
// two hits' values. So a run takes its CPU's buffer with an atomic
// exchange, and a hit that finds it taken copies nothing: it is counted as
// dropped, after its condition, and the status says why (Hit.Throttle). It
// costs a locked exchange per hit; under preempt=none or voluntary it
// never drops anything.
//
// A dropped hit still costs its thread a trap, 23-33 µs on a small VM
// (trapCost), which on a hot line was most of what tracing cost (0.29x the
// requests/s of an HTTP service at the default 50 hits/s, make
// bench-limits). So the first hit
// the bucket refuses in an arming makes the program say so, with a forced
// wake-up, in a small ring buffer of the target's own; a goroutine that
// does nothing else (target.disarming) unlinks the probes, and
// agent.Disarm's timer links them again for the next window. The hits in
// between are counted; those run while the probes are out are not, and go
// out as an estimate (agent.Hit.Uncounted), or as none where the probes
// held the line most of the time they were in (agent.Hit.Uncounted.Unknown):
// the dropped count is then a lower bound. A hit's cost is bounded, not
// measured hit by hit: twice what a bare trap costs a thread of this host,
// and at least the trap and 10 µs, timed once on a probe of the agent's
// own (trapcost_linux.go). The hits
// refused after the allowance was spent, bare traps, check the rate (see
// agent.Disarm). A condition the program cannot evaluate is applied by the
// agent, and so is the limit after it: there the decoder takes the probes
// out, later, as it reads the records.
//
// A uprobe's program sees the general registers, not the floating-point
// ones, so a float64 in an XMM register at the line's first PC would read
// as not captured. The probe then goes, within the line, to the PC where
// the most of the values the tracepoint needs, then of all its values, are
// in memory or general registers (site_linux.go): only a PC in the
// straight run of the line's instructions from its first, so that it fires
// exactly once each time the line runs, and only where a symbolic run of
// those instructions proves that every value readable there is the one
// the line started with. Where
// no such PC reads a value the condition, log message or expressions need,
// Unreadable says so, and backend auto serves the tracepoint with Delve.
//
// The agent side turns each record into a snapshot of the process (the
// registers and the copied regions, through agent/internal/snapshot, which
// the Delve backend shares) and lets Delve's own evaluation read the hit
// from it, so that values render exactly as the Delve backend renders
// them; what was not copied reads as "<not captured: …>", never as a wrong
// value, and a package variable not copied is not read live either. Delve reads some values it could not read as zero (a nil
// interface, an empty map), so the decoder does not rely on its flags: it
// records every read that missed the copy and marks each value whose bytes
// overlap one (markUncaptured). What stays true from one hit to the next
// is kept: the stack is read from a cache per process of what Delve's
// walks found at each PC and return address (dlvvalue.StackCache), and the
// runtime's module data is not read again for each hit
// (snapshot.Process.ClearCaches). Most values do not go through Delve's
// evaluator at all (direct_linux.go): a plan per PC, learned from Delve's
// list of the frame's variables at the first hit there, says where each
// variable lives and how its type decodes, and a direct decoder reads
// numbers, booleans, strings, pointers, structs, arrays, slices, small
// maps and interfaces whose dynamic type Delve found before, as Delve
// would load them; anything else, or anything unsure, is read by Delve's
// evaluator, variable by variable, and Delve's walk of the top frame is
// made only for those. The first hits at each PC are decoded both ways,
// and the tests decode every hit both ways. The differential corpus (corpus_test.go,
// `make differential`) holds every line of real programs to the Delve
// backend's values. Each executable's reader waits for records at the
// agent's priority and decodes them on a thread at nice 19: the traced
// threads never wait for it, and it must not take their CPU while it keeps
// up. A record that waited over lagBound (50 ms: the host is too busy for
// a niced thread) is decoded at the agent's own priority, and so are those
// of the next seconds, so that tracing a busy service still delivers. Each
// niced thread adds a P (GOMAXPROCS) while it lives: the kernel may keep it
// off the CPU mid-decode, holding its P, and the rest of the agent keeps as
// many Ps as CPUs (see spareP). The reader sends the hits it decoded
// together (at most 2048, or 8 ms), and all of them once the ring buffer is
// empty: one wake-up of the agent's goroutines then carries many, and
// they leave for NATS in few messages. A burst faster than the
// decoder fills the ring buffer, and the hits that do not fit are counted
// and reported as dropped by a full ring buffer. The program counts drops
// in the tracepoint's bucket and the next record takes them; once the
// ring buffer is empty, the reader takes what is left from the bucket of a
// tracepoint with no rate limit (mapped into its memory, with the same
// atomic exchange) and reports it in a notice, so that drops after the
// last hit of a burst are told without waiting for a hit that may not
// come. A rate-limited one's go with its next hit (see sweepDrops), or,
// where its line has had none since its probes went back in for longer
// than the rate it ran at allows, in a notice with the estimate of the
// hits run while they were out withdrawn (settleQuiet). The processes of one
// executable share Delve's binary info, the DWARF the plans are made from,
// the ring buffer and its thread: a program run as 50 processes costs the
// agent about 5 MB a process, not 16 (make bench-resources). Reading that
// debug info takes seconds for a large program, and it is all of the time
// to live: so the agent has it read when it discovers the process
// (Backend.Preload), and an executable no process of which is
// traced any more keeps it for a while (parked, at most two), for a
// replica, a restart or the next tracepoint. Preload also opens the
// process's target ahead (its snapshot, Delve's Target and its BPF
// program, 75 ms for a large program), kept prepared until the first
// tracepoint takes it, the process exits or its executable is forgotten.
//
// Probes are BPF links held by this process: Clear, Detach and the
// process's exit remove them, and if the agent dies the kernel does. Where
// the kernel has uprobe_multi links (6.6), the probes of one tracepoint in
// one process are one link, removed at once: each uprobe attached through
// a perf event costs the kernel a grace period, one after another, when it
// is removed.
package ebpf
