// Package setup builds what an agent runs on this host: its backends. The
// riptrace agent command and the scenario runner's embedded agent both call
// it, so that an agent started either way traces with the same backends.
package setup

import (
	"fmt"
	"io"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/agent/ebpf"
)

// Backends sets up the backends name asks for (agent.BackendAuto, ebpf or
// delve): eBPF where it can run, Delve always. workerLog receives the Delve
// workers' logs. An unknown name is an *UnknownBackendError.
func Backends(name string, workerLog io.Writer) (*agent.Backends, error) {
	switch name {
	case agent.BackendAuto, agent.BackendEBPF, agent.BackendDelve:
	default:
		return nil, &UnknownBackendError{Name: name}
	}
	b := &agent.Backends{Default: name, Delve: delve.New(workerLog)}
	if name != agent.BackendDelve {
		if b.EBPFErr = ebpf.Available(); b.EBPFErr == nil {
			b.EBPF = ebpf.New()
		} else if name == agent.BackendEBPF {
			return nil, fmt.Errorf("eBPF is unavailable: %v; use the auto backend to fall back to Delve", b.EBPFErr)
		}
	}
	return b, nil
}

// UnknownBackendError is a backend name that is none of auto, ebpf and delve.
type UnknownBackendError struct{ Name string }

func (e *UnknownBackendError) Error() string {
	return fmt.Sprintf("backend %q: use auto, ebpf or delve", e.Name)
}
