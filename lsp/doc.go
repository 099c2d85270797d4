// Package lsp is RipTrace's language server: `riptrace lsp` serves it on
// stdio to VS Code, Neovim and any other LSP 3.17+ editor.
//
// It reads the fleet's hit stream through the timeline ([fleet.Timeline]:
// the order the hits ran in, the one every client shows), replaying recent
// history first, so a restarted editor shows what already happened, then
// live. It aggregates the
// hits per local file and line ([Aggregate]), and shows them as code lenses
// (hit count, hosts, last hit), inlay hints (last values) and hovers (recent
// hits per host, each naming its request when the group setting or a trace
// id gives one). workspace/executeCommand declares and removes tracepoints
// through a [fleet.Lease] the server owns, so an editor without a debug
// adapter can trace a line. The setting "recording" shows the hits of a
// recorded run (riptrace run --record) instead, and traces nothing
// (recording.go).
//
// Each feature lives in its own file (code_lens.go, inlay_hint.go,
// hover.go, ...) as a thin handler over a pure function that renders a
// snapshot of the aggregate; the small lifecycle and buffer methods are
// grouped in general.go and text_synchronization.go, as gopls groups them.
// Results are sorted so output is deterministic, and every column goes
// through one UTF-16 mapper (mapper.go).
//
// Nothing in this package writes to stdout: stdio is the wire.
package lsp
