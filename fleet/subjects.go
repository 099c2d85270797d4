package fleet

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the first token of every RipTrace subject and the stem of
// every stream and bucket name.
const DefaultPrefix = "riptrace"

// Subjects derives every subject, stream and bucket name from one prefix.
// Each subject exists as a template for publishing (a method taking the host)
// and, where clients subscribe across hosts, as a wildcard.
type Subjects struct {
	Prefix string
}

// NewSubjects returns the subjects for prefix, or for DefaultPrefix if prefix
// is empty.
func NewSubjects(prefix string) Subjects {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Subjects{Prefix: prefix}
}

// ProfileGet is the request/reply subject answering host facts and the host's
// Go processes.
func (s Subjects) ProfileGet(host string) string {
	return fmt.Sprintf("%s.%s.profile.get", s.Prefix, host)
}

// Attach is the request/reply subject attaching the host's agent to a pid.
func (s Subjects) Attach(host string) string {
	return fmt.Sprintf("%s.%s.debugger.attach", s.Prefix, host)
}

// CreateTracepoint is the request/reply subject installing a tracepoint on
// one host right away, outside the declared state.
func (s Subjects) CreateTracepoint(host string) string {
	return fmt.Sprintf("%s.%s.debugger.createTracepoint", s.Prefix, host)
}

// ClearTracepoint is the request/reply subject removing a tracepoint created
// through CreateTracepoint.
func (s Subjects) ClearTracepoint(host string) string {
	return fmt.Sprintf("%s.%s.debugger.clearTracepoint", s.Prefix, host)
}

// Trace is the subject an agent publishes the hits of one tracepoint on:
// P.<host>.hits.<tracepoint>. Naming the tracepoint lets every reader ask
// the server for only its own (a filtered consumer, TraceOf): a client
// receives no hit of another's tracepoint, and a debug session tracing
// three agents of a thousand reads what those three send.
func (s Subjects) Trace(host, tracepoint string) string {
	return fmt.Sprintf("%s.%s.hits.%s", s.Prefix, host, tracepoint)
}

// TraceOf matches the hits of one tracepoint, from every host.
func (s Subjects) TraceOf(tracepoint string) string {
	return fmt.Sprintf("%s.*.hits.%s", s.Prefix, tracepoint)
}

// TraceAll matches every hit; the hit stream captures it.
func (s Subjects) TraceAll() string { return s.Prefix + ".*.hits.*" }

// TraceHost returns the host of a subject made by Trace. The server lets
// only that host's agent publish on it (see AgentPermissions), so readers take
// a hit's host from here, never from the hit's body.
func (s Subjects) TraceHost(subject string) (string, bool) {
	return s.hostOf(subject, "hits")
}

// hostOf returns the host of P.<host>.<kind>.<tracepoint>.
func (s Subjects) hostOf(subject, kind string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || parts[1] != kind || parts[0] == "" || parts[2] == "" {
		return "", false
	}
	return parts[0], true
}

// Watermark is the subject an agent publishes its watermarks for one
// tracepoint on, into the hit stream beside that tracepoint's hits, so
// that a reader of the tracepoint sees them in the same place among its
// hits (see Timeline) and no other agent's.
func (s Subjects) Watermark(host, tracepoint string) string {
	return fmt.Sprintf("%s.%s.marks.%s", s.Prefix, host, tracepoint)
}

// WatermarkOf matches the watermarks for one tracepoint, from every host.
func (s Subjects) WatermarkOf(tracepoint string) string {
	return fmt.Sprintf("%s.*.marks.%s", s.Prefix, tracepoint)
}

// WatermarkAll matches every watermark; the hit stream captures it.
func (s Subjects) WatermarkAll() string { return s.Prefix + ".*.marks.*" }

// WatermarkHost returns the host of a subject made by Watermark.
func (s Subjects) WatermarkHost(subject string) (string, bool) {
	return s.hostOf(subject, "marks")
}

// IsWatermark tells a watermark's subject from a hit's.
func (s Subjects) IsWatermark(subject string) bool {
	_, ok := s.WatermarkHost(subject)
	return ok
}

// LegacyTraceAll and LegacyWatermarkAll are where agents of wire version
// 1 published, one subject per host. The hit stream still captures them,
// so that such an agent's hits are not refused by the server but reach
// the readers that read everything, which say what they do not
// understand (see Version).
func (s Subjects) LegacyTraceAll() string     { return s.Prefix + ".*.debugger.trace" }
func (s Subjects) LegacyWatermarkAll() string { return s.Prefix + ".*.debugger.watermark" }

// Clock is the request/reply subject on which the server answers its time,
// the reference clock of the timeline.
func (s Subjects) Clock() string { return s.Prefix + ".clock" }

// HitStream is the JetStream stream holding every hit in one order.
func (s Subjects) HitStream() string { return strings.ToUpper(s.Prefix) + "_HITS" }

// TracepointBucket is the key-value bucket of declared tracepoint specs,
// keyed by tracepoint id.
func (s Subjects) TracepointBucket() string { return s.Prefix + "_tracepoints" }

// StatusBucket is the key-value bucket of per tracepoint × host × pid status,
// keyed by StatusKey.
func (s Subjects) StatusBucket() string { return s.Prefix + "_status" }

// HostBucket is the key-value bucket where each agent keeps a heartbeat,
// keyed by host.
func (s Subjects) HostBucket() string { return s.Prefix + "_hosts" }

// StatusKey is the key of one status entry. Pid 0 is the host-wide entry
// (for example "no matching process").
func StatusKey(tracepoint, host string, pid int) string {
	return fmt.Sprintf("%s.%s.%d", tracepoint, host, pid)
}

// Token turns a name into a valid subject token and key-value key token:
// letters, digits, '-' and '_' are kept, anything else becomes '_'.
func Token(name string) string {
	if name == "" {
		return "_"
	}
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}
