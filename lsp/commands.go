package lsp

import (
	"slices"

	"github.com/riptrace/riptrace/fleet"
)

// Command documents one command the server executes.
type Command struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Commands are what workspace/executeCommand accepts; editors bind them and
// are checked against this list (editors/).
var Commands = []Command{
	{CommandToggleTracepoint, "Declare or remove a tracepoint at a line: arguments [uri, line]."},
	{CommandShowHits, "Show the recent hits of a line: arguments [uri, line]."},
	{CommandClearHits, "Forget the hits of a file ([uri]) or of every file ([])."},
}

// Setting documents one setting of the language server; the VS Code
// extension's riptrace.* settings and the Neovim plugin's are checked
// against Settings (editors/).
type Setting = fleet.Attribute

// Settings are the keys of Config, by which mergeConfig decodes them.
var Settings = slices.Concat([]Setting{
	{Name: "nats", Type: "string", Description: "NATS server URL(s); defaults to $RIPTRACE_NATS or nats://127.0.0.1:4222.", Example: "nats://127.0.0.1:4222"},
}, fleet.CredentialAttributes("credentials"), []Setting{
	{Name: "prefix", Type: "string", Description: "Subject prefix of the fleet.", Example: "riptrace"},
	{Name: "hosts", Type: "array", Description: "Host globs whose hits are shown.", Example: []string{"orders-*"}},
	{Name: "processes", Type: "array", Description: "Process globs whose hits are shown.", Example: []string{"github.com/acme/*"}},
	{Name: "group", Type: "array", Description: "Group hits by request: the captured values that name a request (an argument, a local or an expression, which riptrace.toggleTracepoint then captures); a hit's group is the first it has, or its W3C trace id. Hovers show each hit's request.", Example: []string{"req.OrderID"}},
	{Name: "history", Type: "string", Description: "How much of the hit history to replay, as a Go duration (\"1h\").", Example: "10m"},
	{Name: "maxRecent", Type: "integer", Description: "How many recent hits to keep per line.", Example: 20},
	{Name: "backend", Type: "string", Description: "The agent backend of the tracepoints riptrace.toggleTracepoint declares: auto (eBPF where it can, else Delve), ebpf or delve.", Example: "auto", Enum: []string{"auto", "ebpf", "delve"}},
	{Name: "revision", Type: "string", Description: "The revision (commit or tag) that processes without vcs.revision run, for the tracepoints riptrace.toggleTracepoint declares; empty finds it from their version strings or debug info.", Example: "v1.4.2"},
	{Name: "recording", Type: "string", Description: "A recording of riptrace run --record DIR to show instead of the fleet's hits, relative to the workspace: its hits show as live ones do, and nothing is traced; empty shows the fleet's.", Example: "recordings/checkout.hits.jsonl"},
})
