// Package fleet is the shared language of RipTrace: the NATS subjects, the
// versioned JSON messages that travel on them, the embedded server (alone,
// a member of a cluster, or a leaf node: [ServerConfig]), and both
// halves of the protocol over one connection: the client API through which
// the CLI, the debug adapter and the language server talk to agents, and the
// agent's own half.
//
// Nothing outside fleet holds a NATS connection, a JetStream context or a
// bucket. Agents serve the per-host request/reply subjects
// ([Client.ServeHost], see [Subjects]), watch the declared tracepoints in a
// JetStream key-value bucket ([Client.WatchSpecs], which resyncs after
// reconnects), report per-process status in a second bucket
// ([Client.PutStatus]) and their heartbeat in a third, which clients
// follow with [Client.WatchHosts] instead of asking every agent, compare
// their clock with the server's ([Client.AskClock], [Clock]), and publish hits and
// watermarks into a JetStream stream through an [Outbox], which keeps them
// in order through outages, backs off when the stream is overloaded, and
// sends a backlog several hits to a message, compressed
// ([PackedHitBatch]) ([HitPublisher]
// publishes single messages, for tools and tests). Clients read it
// through a [HitReader], which decodes every message with [DecodeHits],
// or through [Timeline], which puts the hits in the order they ran: every
// client shows the same order. Every front end logs
// in with one [Credentials]; the debug adapter and the language server
// decode what editors send by a list of [Attribute] each. docs/DESIGN.md
// describes the subjects, buckets and messages; docs/timeline.md the
// timeline.
//
// fleet imports no other RipTrace package.
package fleet
