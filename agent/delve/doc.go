// Package delve is the ptrace backend of the agent: it attaches to a Go
// process with Delve's pkg/proc as a library and turns breakpoints into
// tracepoints that stop the process only as long as it takes to capture what
// the spec asks for.
//
// Each attached process gets its own worker process (the agent's own
// executable, re-run with RIPTRACE_DELVE_WORKER set), because a tracer
// process can serve only one Delve target: Delve waits with wait4(-1). The
// worker also outlives the agent: if the agent dies, the worker sees its
// stdin close, removes every breakpoint and detaches, so the target never
// meets a stray breakpoint instruction.
//
// A worker keeps all its threads on one CPU once attached (see
// pinToOneCPU): Delve hands each ptrace request to one locked thread, around
// thirty times per hit, and on one CPU a hand-over is a context switch
// rather than a wake-up of another CPU.
//
// Inside a worker, one goroutine, the loop, owns Delve's TargetGroup: it
// resumes the process, collects hits when it stops, and runs the commands
// (set, clear, detach) that other goroutines queue for it. To get the loop's
// attention while the process runs, a caller asks Delve for a manual stop.
package delve
