// Package agent runs on every host: it finds the Go processes there that its
// attach allow-list admits, attaches to them on demand, installs the
// tracepoints declared in the fleet's key-value bucket (and those requested
// directly over createTracepoint), reports their status per process, keeps
// its heartbeat, and publishes every hit into the hit stream, in order and
// through NATS outages. It dials out to NATS and never listens.
//
// The agent talks to processes through a [Backend]. Everything above the
// seam (discovery, reconciling, hit limits, redaction, publishing) is
// shared: the agent refuses the specs that would read around redaction
// ([Redactor.Check]) and writes log messages itself from values it has
// redacted, so a backend is asked for values only. There are two backends:
// agent/delve (ptrace, Delve as a library) and agent/ebpf (uprobes);
// [Backends] puts both behind the seam and picks one per tracepoint.
//
// No spec takes the agent down: every spec read from the bucket is checked
// against fleet's bounds again, a panic while placing one or publishing its
// hits quarantines that spec on this host, and so do repeated deaths of
// the backend process serving it (quarantine.go). Each tracepoint in each
// process is a placement whose lifecycle, from Set to removal, is one type
// with one method per transition (placement.go).
//
// A process whose executable carries no vcs.revision is reported with its
// Go build ID and its -ldflags -X version strings, and a profile request
// naming a file gets that file's DWARF fingerprint (build_linux.go): the
// client finds the revision from them (source.Resolve), and the agent
// traces what the spec says of that build (fleet.Location.ForProcess).
//
// cmd/riptrace's agent command builds the agent from
// flags and the YAML file read by [LoadConfigFile]; tests run it with
// agent/agenttest.
package agent

import (
	"context"
	"fmt"

	"github.com/riptrace/riptrace/fleet"
)

// Backend attaches to processes.
type Backend interface {
	Attach(ctx context.Context, pid int) (Target, error)
}

// Target is one attached process.
type Target interface {
	// Set installs tp, or replaces the tracepoint with the same id. It
	// resolves the location to PCs, or fails with a *fleet.Error whose
	// message says what to do.
	Set(ctx context.Context, tp Tracepoint) (Placement, error)
	// Clear removes the tracepoint with id; clearing an unknown id is not an
	// error.
	Clear(ctx context.Context, id string) error
	// Hits delivers hits until the target is detached or its process exits;
	// then it is closed.
	Hits() <-chan Hit
	// Detach removes every tracepoint and lets the process run on. If the
	// process had already exited, it returns ErrProcessExited.
	Detach(ctx context.Context) error
}

// A Deliverer is a Target that can send its hits on a channel it is given
// rather than on its own, whose Hits still closes when they end. The target
// that merges the backends' hits (Backends.Attach) has it send on its own
// channel: a hit then wakes no goroutine that only passes it on (on make
// bench's hot loop that hop was a tenth of the eBPF agent's CPU a hit).
type Deliverer interface {
	// DeliverTo has every hit sent from now on go to ch. It is called
	// before the first tracepoint is set. The target never closes ch:
	// the caller closes it once the target's Hits is closed.
	DeliverTo(ch chan<- Hit)
}

// Tracepoint is what a backend installs: the fleet spec as declared.
type Tracepoint = fleet.Spec

// Placement says where a tracepoint went in one process.
type Placement = fleet.Placement

// Hit is one hit as a backend reports it. Fault, when set, is not a hit but a
// failure of the tracepoint that the backend met while running (a condition
// that cannot be evaluated, say); the backend has removed the tracepoint.
type Hit struct {
	fleet.Hit
	// TimeErr is how far off the backend's capture time (Hit.Time) may
	// be, in ns: the error of turning the kernel's monotonic time into
	// wall time. It widens the hit's clock bound.
	TimeErr int64
	Fault   *fleet.Error
	// Throttle, if set, says why the backend dropped hits before this one
	// (they are in Dropped) when the tracepoint's own rate limit was not
	// the reason: the target's stop budget, say. The status shows it.
	Throttle string
	// DropsOnly says that this is no hit but a count of dropped ones
	// (Dropped, Throttle), and of those run with the probes out
	// (Uncounted, Waiting, Rearm), for a tracepoint whose hits were all
	// dropped for a while, or whose line went quiet: the status must say
	// so without waiting for a hit.
	DropsOnly bool
	// Uncounted tells of the hits the backend dropped before this one
	// without counting them: the tracepoint's probes were out, its
	// allowance spent (see Disarm). Dropped is then a lower bound, and
	// Dropped + Uncounted.N the estimate, unless Uncounted.Unknown says
	// the probes were also out for a while whose hits no one can
	// estimate: the estimate then leaves those out (the status counts
	// such put-backs, fleet.Status.DroppedUnestimated).
	Uncounted Uncounted
	// Waiting says that an estimate of the hits run with the probes out
	// waits for the next arming to confirm it (Disarm.Waiting): for now
	// Dropped is a lower bound with no estimate.
	Waiting bool
	// Rearm, if set, says that the backend puts the probes back less
	// often than each second, and why (Disarm.BackedOff).
	Rearm string
}

// ErrProcessExited is returned when the process went away while attached.
type ErrProcessExited struct {
	Pid    int
	Status int
}

func (e ErrProcessExited) Error() string {
	return fmt.Sprintf("process %d exited with status %d", e.Pid, e.Status)
}
