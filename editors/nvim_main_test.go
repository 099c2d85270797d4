package editors

import (
	"testing"

	"github.com/riptrace/riptrace/agent/agenttest"
)

// TestMain serves as a Delve worker when the agents of the tests re-run
// this binary, and removes the targets the tests built.
func TestMain(m *testing.M) { agenttest.Main(m) }
