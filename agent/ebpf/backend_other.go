//go:build !linux

package ebpf

import (
	"context"
	"errors"
	"time"

	"github.com/riptrace/riptrace/agent"
)

var errNotLinux = errors.New("the eBPF backend needs Linux")

// Backend is unavailable off Linux.
type Backend struct{}

func New() *Backend { return &Backend{} }

// Available says that eBPF needs Linux.
func Available() error { return errNotLinux }

func (b *Backend) Attach(ctx context.Context, pid int) (agent.Target, error) {
	return nil, errNotLinux
}

// MeasuredTrap says no trap was measured: there are none off Linux.
func MeasuredTrap() (time.Duration, bool) { return 0, false }
