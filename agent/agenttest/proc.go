package agenttest

import (
	"testing"

	"github.com/riptrace/riptrace/internal/testsupport"
)

// Proc is a target process started by [Start].
type Proc = testsupport.Proc

// Start starts a target and waits for its READY line: see
// [testsupport.Start].
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	return testsupport.Start(t, bin, args...)
}
