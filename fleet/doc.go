// Package fleet is the shared language of RipTrace: the NATS subjects, the
// versioned JSON messages that travel on them, the embedded server, and the
// client API through which the CLI, the debug adapter and the language server
// talk to agents.
//
// Nothing above fleet talks to an agent any other way. Agents serve the
// per-host request/reply subjects (see [Subjects]), watch the declared
// tracepoints in a JetStream key-value bucket, report per-process status in a
// second bucket and their heartbeat in a third, and publish hits into a
// JetStream stream whose sequence is the one global order every consumer
// sees. docs/DESIGN.md describes the subjects, buckets and messages.
//
// fleet imports no other RipTrace package.
package fleet
