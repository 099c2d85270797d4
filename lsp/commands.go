package lsp

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

// Setting documents one key of the server's configuration (initializationOptions,
// or the "riptrace" section of workspace/didChangeConfiguration).
type Setting struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description"`
}

// Settings are the keys of Config.
var Settings = []Setting{
	{"nats", "string", "NATS server URL(s); defaults to $RIPTRACE_NATS or nats://127.0.0.1:4222."},
	{"credentials", "string", "NATS credentials file (.creds)."},
	{"inboxPrefix", "string", "Where replies arrive, in place of _INBOX: the prefix the server's permissions give the user (_INBOX_<user> in deploy/nats.conf)."},
	{"nkey", "string", "NATS NKey seed file."},
	{"user", "string", "NATS user name."},
	{"password", "string", "NATS password (needs user)."},
	{"token", "string", "NATS authentication token."},
	{"tls", "object", "TLS files: {cert, key, ca}; cert and key together."},
	{"prefix", "string", "Subject prefix of the fleet."},
	{"hosts", "array", "Host globs whose hits are shown."},
	{"processes", "array", "Process globs whose hits are shown."},
	{"history", "string", "How much of the hit history to replay, as a Go duration (\"1h\")."},
	{"maxRecent", "integer", "How many recent hits to keep per line."},
}
