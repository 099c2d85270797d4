package fleet

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The raw handles, for fleet's own tests of the wire: code outside fleet
// goes through Client's methods.

func (c *Client) Conn() *nats.Conn                 { return c.nc }
func (c *Client) JetStream() jetstream.JetStream   { return c.js }
func (c *Client) TracepointKV() jetstream.KeyValue { return c.tps }
func (c *Client) HostKV() jetstream.KeyValue       { return c.hosts }

// BuffersReused is how many buffers o's hits and batches had again.
func (o *Outbox[T]) BuffersReused() int {
	return int(o.bufs.reused.Load())
}
