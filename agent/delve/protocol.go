package delve

import (
	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// The agent and a worker talk JSON lines over the worker's stdin and stdout.
// This is an internal protocol between two copies of one binary: it is not
// versioned.

// request goes from the agent to a worker.
type request struct {
	Seq  uint64            `json:"seq"`
	Op   string            `json:"op"` // "set", "clear", "detach"
	Spec *agent.Tracepoint `json:"spec,omitempty"`
	ID   string            `json:"id,omitempty"`
}

// event goes from a worker to the agent.
type event struct {
	Type      string           `json:"type"` // "attached", "reply", "hit", "stats", "end"
	Seq       uint64           `json:"seq,omitempty"`
	Placement *agent.Placement `json:"placement,omitempty"`
	Hit       *fleet.Hit       `json:"hit,omitempty"`
	Error     *fleet.Error     `json:"error,omitempty"`
	Exited    *int             `json:"exited,omitempty"` // the target's exit status, on "end"
	Throttle  string           `json:"throttle,omitempty"`
	DropsOnly bool             `json:"dropsOnly,omitempty"` // the hit is a count of dropped ones (agent.Hit.DropsOnly)
	Uncounted agent.Uncounted  `json:"uncounted,omitzero"`  // agent.Hit.Uncounted
	Waiting   bool             `json:"waiting,omitempty"`   // agent.Hit.Waiting
	Rearm     string           `json:"rearm,omitempty"`     // agent.Hit.Rearm
	Stopped   int64            `json:"stopped,omitempty"`   // ns the target spent stopped since attach, on "hit" and "stats"
}

// workerEnv names the environment variable that turns the agent's executable
// into a worker for the pid it holds.
const workerEnv = "RIPTRACE_DELVE_WORKER"

// budgetEnv passes the stop budget (a fraction of each second) to a worker.
const budgetEnv = "RIPTRACE_DELVE_STOP_BUDGET"

// modeEnv tells a worker how to stop threads at tracepoints: modeUprobe or
// modeInt3 (see Backend.Mode). Set on the agent, it forces modeInt3.
const modeEnv = "RIPTRACE_DELVE_MODE"

const (
	modeUprobe = "uprobe"
	modeInt3   = "int3"
)
