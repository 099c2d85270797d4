package dap

import "github.com/riptrace/riptrace/fleet"

// Attribute documents one attribute of the attach configuration; the
// VS Code extension's configurationAttributes and the Neovim plugin's
// configuration are checked against AttachAttributes (editors/).
type Attribute = fleet.Attribute

// AttachAttributes are the attributes parseAttach reads, in the order
// editors show them; a value of the wrong type is refused with the
// attribute's Type, Example and Description.
var AttachAttributes = append([]Attribute{
	{Name: "nats", Type: "string", Description: "NATS server URL(s), comma-separated; defaults to $RIPTRACE_NATS or nats://127.0.0.1:4222.", Example: "nats://127.0.0.1:4222"},
	{Name: "hosts", Type: "array", Description: "Host globs to trace on (a single string is one glob); all hosts when empty.", Example: []string{"orders-*"}},
	{Name: "processes", Type: "array", Description: "Process globs (module path, main package or executable) to trace; all Go processes when empty.", Example: []string{"github.com/acme/orders/cmd/orders"}},
	{Name: "capture", Type: "object", Description: "What each hit captures: args, locals (booleans), exprs (strings), stackDepth, maxStringLen, maxArrayValues, maxStructDepth, maxVariables.", Example: map[string]any{"args": true, "locals": true, "stackDepth": 8}},
	{Name: "group", Type: "array", Description: "Group hits by request: the captured values that name a request (an argument, a local or an expression, which the breakpoints then capture); a hit's group is the first it has, or its W3C trace id. The timeline shows each request's name.", Example: []string{"req.OrderID"}},
	{Name: "maxHitsPerSecond", Type: "integer", Description: "Rate limit of each tracepoint; hits over it are dropped at the agent and counted.", Example: 50},
	{Name: "substitutePath", Type: "array", Description: "Path rewrites, as in vscode-go: {from: local prefix, to: remote prefix}.", Example: []map[string]string{{"from": "${workspaceFolder}", "to": "/src"}}},
	{Name: "persist", Type: "boolean", Description: "Keep the tracepoints after the session ends, until they are removed.", Example: false},
	{Name: "backend", Type: "string", Description: "The agent backend that serves the breakpoints: auto (eBPF where it can, else Delve), ebpf or delve; every breakpoint message names the one that serves it.", Example: "auto", Enum: []string{"auto", "ebpf", "delve"}},
	{Name: "consoleHits", Type: "string", Description: "What the debug console shows of hits: summary (the first hits of each breakpoint in full, then a count per breakpoint per second) or all (every hit).", Example: "summary", Enum: []string{"summary", "all"}},
	{Name: "snapshots", Type: "boolean", Description: "Open each hit as a snapshot (a stopped event on the recorded state); the processes never pause.", Example: false},
	{Name: "cwd", Type: "string", Description: "The local checkout: breakpoint files and hits are mapped inside it.", Example: "${workspaceFolder}"},
	{Name: "prefix", Type: "string", Description: "Subject prefix of the fleet (one NATS subject token).", Example: "riptrace"},
	{Name: "recording", Type: "string", Description: "A recording of riptrace run --record DIR to replay instead of attaching: its hits show as live ones do, in the order they ran, and nothing is traced.", Example: "${workspaceFolder}/recordings/checkout.hits.jsonl"},
	{Name: "revision", Type: "string", Description: "The revision (commit or tag) that processes without vcs.revision run, for those whose revision RipTrace cannot find from their version strings or debug info; empty finds it.", Example: "v1.4.2"},
}, fleet.CredentialAttributes("creds")...)
