package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Silent returns, of hosts, those whose agent has fallen silent, with when
// it was last heard (zero when its heartbeat is gone from the bucket): its
// heartbeat is older than three of its periods, the rule Hosts applies. It
// reads the heartbeats only, asking no agent: a client following its
// tracepoints calls it often.
func (c *Client) Silent(ctx context.Context, hosts []string) (map[string]time.Time, error) {
	gctx, release := c.perms.guard(ctx, c.perms.jsPatterns()...)
	defer release()
	silent := make(map[string]time.Time)
	for _, host := range hosts {
		e, err := c.hosts.Get(gctx, host)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			silent[host] = time.Time{}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the heartbeat of host %s: %w", host, denied(gctx, err))
		}
		var hb Heartbeat
		if err := Decode(e.Value(), "heartbeat", &hb); err != nil {
			continue // a heartbeat of another version: not this client's to judge
		}
		if time.Since(hb.Updated) > 3*time.Duration(hb.Every) {
			silent[host] = hb.Updated
		}
	}
	return silent, nil
}
