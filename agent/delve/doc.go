// Package delve is the ptrace backend of the agent: it reads a hit with
// Delve's pkg/proc as a library, stopping the thread that hit only as long
// as it takes to capture what the spec asks for.
//
// Each attached process gets its own worker process (the agent's own
// executable, re-run with RIPTRACE_DELVE_WORKER set): a process serves one
// tracee group per tracing thread, and a worker that fails or is killed
// takes only its own target's tracing with it. If the agent dies, the
// worker sees its stdin close, removes its tracepoints and exits.
//
// # Uprobe mode (the default)
//
// Nothing of ours is ever written into the target. Each PC of a tracepoint
// gets a kernel uprobe (see uprobe_linux.go) whose BPF program records the
// thread's registers, and the bytes the probed instruction is about to
// write, in a map keyed by thread id, and sends that thread SIGURG. The
// worker traces every thread with PTRACE_SEIZE (new threads through
// PTRACE_O_TRACECLONE), lets go of a listed id that another process's
// thread took meanwhile (see holdTarget.seize), and never sends SIGSTOP:
// the target does not pause at attach, and a hit stops only the thread
// that hit. One goroutine on one
// locked OS thread (holdTarget.loop) waits for the stops: a SIGURG with a
// record is a hit, captured while that thread alone is stopped, then
// resumed with its SIGURG delivered (the Go runtime's own preemption signal,
// which it ignores when it did not ask for it; withholding it could starve
// the runtime's preemption of that thread). Every other signal goes on to
// the target as it came; group stops are kept with PTRACE_LISTEN.
//
// Delve evaluates the hit over agent/internal/snapshot: the registers the
// probe saw, and the live memory of the process. So:
//
//   - The thread stops one instruction late: the kernel runs the probed
//     instruction out of line before it delivers a signal (Linux 6.18 lets
//     no uprobe program move the thread instead). The registers are those
//     before it; the memory it wrote reads as it was before, from the
//     probe's copy (up to 64 bytes; a wider write, or a string instruction,
//     reads as not captured). The floating-point registers are read live:
//     the one vector register a scalar float instruction wrote reads as
//     not captured, the others as they were; after an instruction that may
//     write more (or one not decoded), all read as not captured.
//   - The hit goroutine's own stack holds still; the heap does not: other
//     goroutines run during the capture, so a value they change may be read
//     as it is a moment after the hit (as with any live debugger read; the
//     eBPF backend copies at the instant instead).
//   - Every signal the target receives costs it a ptrace stop and a wake-up
//     of the worker (the runtime's preemption signals during GC, SIGPROF
//     while profiling).
//
// If the worker dies at any instant (SIGKILL, the OOM killer, with its
// agent), the kernel closes its file descriptors, which removes the
// uprobes, and lets every traced thread go: a thread stopped for a hit
// resumes with its SIGURG delivered, one stopped for another signal with
// that signal, a group-stopped process stays stopped as its sender meant
// (the loop only peeks at a stop until it resumes the thread: a stop's
// report, once consumed, no longer holds its signal for the kernel to
// deliver).
// No breakpoint of ours is left, no signal of Delve's to deliver, nothing to
// repair: there is no watchdog. A program that asked for SIGURG with
// signal.Notify sees one more, which Go documents may happen anyway.
// TestKillMatrix measures it: SIGKILL of agent, worker or both at random
// instants, on a line hit without pause and on one hit 50 times a second,
// the target self-checking its results (make kill-matrix).
//
// The rate limit comes after the condition (before the capture, when there
// is none), and the first hit it refuses in an arming takes the
// tracepoint's uprobes out until the next window (agent.Disarm): the hits
// it would refuse then stop nothing, and are estimated, not counted: from
// the rate the line ran at with them in, less the time the stops held the
// process (the stop budget's count), and not at all where that was more
// than half the time (a hot line, each hit a stop). A hit condition that
// needs every hit counted (% N, or > N until it holds) keeps them in. In
// int3 mode there is no estimate at all (agent.Disarm.NoEstimate). What
// the next hit is to report of the hits refused and run meanwhile goes in
// a notice once the line is quiet after the uprobes went back in (no hit
// in the time the estimate's rate allows the first: agent.Disarm.Quiet);
// in int3 mode it waits for the next hit, as telling it would stop the
// process.
//
// Every stop counts against the stop budget, conditions and dropped hits
// included, from the probe's timestamp to the resume. Once it is spent, the
// worker closes a gate in the BPF program: hits are then counted in the
// kernel and stop nothing until the budget refills, and the counts are
// reported as dropped by the budget. A hit behind the gate still costs a
// trap, so the tracepoints without a condition (or a hit condition that
// counts every hit) also have their uprobes taken out until the budget
// allows again, their drops then estimated as with the rate limit.
//
// # Int3 mode (the fallback)
//
// Where the kernel refuses the probe program or a uprobe (no CAP_BPF or
// CAP_PERFMON, an old kernel, or a kernel that wants CAP_SYS_ADMIN for
// uprobes, as 6.18 does with perf_event_paranoid=2 and the capabilities
// deploy/ grants), or RIPTRACE_DELVE_MODE=int3 asks for it, the worker
// attaches with Delve's native backend, which writes int3 breakpoints and
// stops every thread at each hit. A worker killed there can leave int3s in
// the text and signals of its own to deliver; a watchdog per worker repairs
// what it can (see watchdog_linux.go), and windows stay open: make
// kill-matrix measures them (README). In that mode a worker keeps its
// threads on one CPU once attached (see pinToOneCPU), and one goroutine, the
// loop, owns Delve's TargetGroup: it resumes the process, collects hits when
// it stops, and runs the commands (set, clear, detach) that other goroutines
// queue for it, asking Delve for a manual stop to get its attention.
// There too, the first hit the rate limit refuses in a window takes the
// tracepoint's breakpoint out until the next (agent.Disarm): a refused hit
// would stop the whole process for nothing. Putting it back costs one
// manual stop a window.
//
// Delve stops the process at a trap by waiting for every thread it sent
// SIGSTOP to; one that ends instead can leave that wait waiting for
// nothing, the process stopped for good. A watcher gives the wait an event
// when it sees that state (see unstick).
//
// Delve evaluates a breakpoint's condition in its own stop, and resumes
// the process without a word when it does not hold. At an inlined call's
// PC, whether the condition reads a part of a value the compiler left out
// is told only at a hit (see dlvvalue.DroppedInCondition): until each
// such PC has stopped once, Delve stops at every hit and the loop
// evaluates the condition itself, so that none is decided on the zero
// Delve reads for a part left out.
package delve
