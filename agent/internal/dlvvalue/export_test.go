package dlvvalue

import "github.com/go-delve/delve/pkg/proc"

// For the external tests, which build targets with agenttest.
var (
	DroppedOfVar = droppedOfVar
	FakeScope    = fakeScope
)

func (c *PieceCache) DroppedAtPC(pc uint64, v *proc.Variable) *Dropped { return c.droppedAtPC(pc, v) }
