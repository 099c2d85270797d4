package delve

import (
	"errors"
	"io"
)

// NewInt3 returns a backend that uses Delve's breakpoints and watchdogs,
// as where the kernel refuses uprobes.
func NewInt3(stderr io.Writer) *Backend {
	b := New(stderr)
	b.modeOnce.Do(func() { b.int3, b.uprobeErr = true, errors.New("asked for by a test") })
	return b
}

// ThreadStatuses reads the status of every thread of pid still there.
var ThreadStatuses = threadStatuses

// ReadStatus reads the status of thread tid of pid (its main thread if 0).
var ReadStatus = readStatus
