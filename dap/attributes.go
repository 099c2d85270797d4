package dap

// Attribute documents one attribute of the attach configuration. The list is
// the one place editors learn them from: the VS Code extension's
// configurationAttributes and the Neovim plugin's configuration are checked
// against it (editors/), so the three cannot drift.
type Attribute struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // JSON Schema type: string, boolean, integer, object, array
	Description string `json:"description"`
	Example     any    `json:"example,omitempty"`
}

// AttachAttributes are the attributes parseAttach reads, in the order
// editors show them; a value of the wrong type is refused with the
// attribute's Type, Example and Description.
var AttachAttributes = []Attribute{
	{"nats", "string", "NATS server URL(s), comma-separated; defaults to $RIPTRACE_NATS or nats://127.0.0.1:4222.", "nats://127.0.0.1:4222"},
	{"hosts", "array", "Host globs to trace on (a single string is one glob); all hosts when empty.", []string{"orders-*"}},
	{"processes", "array", "Process globs (module path, main package or executable) to trace; all Go processes when empty.", []string{"github.com/acme/orders/cmd/orders"}},
	{"capture", "object", "What each hit captures: args, locals (booleans), exprs (strings), stackDepth, maxStringLen, maxArrayValues, maxStructDepth, maxVariables.", map[string]any{"args": true, "locals": true, "stackDepth": 8}},
	{"maxHitsPerSecond", "integer", "Rate limit of each tracepoint; hits over it are dropped at the agent and counted.", 50},
	{"substitutePath", "array", "Path rewrites, as in vscode-go: {from: local prefix, to: remote prefix}.", []map[string]string{{"from": "${workspaceFolder}", "to": "/src"}}},
	{"persist", "boolean", "Keep the tracepoints after the session ends (up to 24 h).", false},
	{"snapshots", "boolean", "Open each hit as a snapshot (a stopped event on the recorded state); the processes never pause.", false},
	{"cwd", "string", "The local checkout: breakpoint files and hits are mapped inside it.", "${workspaceFolder}"},
	{"prefix", "string", "Subject prefix of the fleet (one NATS subject token).", "riptrace"},
	{"creds", "string", "NATS credentials file (.creds).", "/home/me/.nats/user.creds"},
	{"inboxPrefix", "string", "Where replies arrive, in place of _INBOX: the prefix the server's permissions give the user (_INBOX_<user> in deploy/nats.conf).", "_INBOX_alice"},
	{"nkey", "string", "NATS NKey seed file.", "/home/me/.nats/user.nk"},
	{"user", "string", "NATS user name.", "alice"},
	{"password", "string", "NATS password (needs user).", "s3cret"},
	{"token", "string", "NATS authentication token.", "s3cret"},
	{"tls", "object", "TLS files: {cert, key, ca}; cert and key together.", map[string]string{"ca": "/etc/riptrace/ca.pem"}},
}
