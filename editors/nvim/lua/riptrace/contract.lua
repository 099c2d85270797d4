-- What the plugin and the riptrace binary agree on: the attach attributes
-- of `riptrace dap`, the commands and the settings of `riptrace lsp`.
-- editors/nvim_test.go compares this table with dap.AttachAttributes,
-- lsp.Commands and lsp.Settings, so a change on either side that the other
-- misses fails `make test`. Types are JSON Schema types.
return {
  -- The nvim-dap adapter and configuration type.
  adapter = 'riptrace',

  -- The attributes of an attach configuration, in the order the Go side
  -- lists them.
  attributes = {
    { name = 'nats', type = 'string' },
    { name = 'hosts', type = 'array' },
    { name = 'processes', type = 'array' },
    { name = 'capture', type = 'object' },
    { name = 'group', type = 'array' },
    { name = 'maxHitsPerSecond', type = 'integer' },
    { name = 'substitutePath', type = 'array' },
    { name = 'persist', type = 'boolean' },
    { name = 'backend', type = 'string', enum = { 'auto', 'ebpf', 'delve' } },
    { name = 'consoleHits', type = 'string', enum = { 'summary', 'all' } },
    { name = 'snapshots', type = 'boolean' },
    { name = 'cwd', type = 'string' },
    { name = 'prefix', type = 'string' },
    { name = 'recording', type = 'string' },
    { name = 'revision', type = 'string' },
    { name = 'creds', type = 'string' },
    { name = 'inboxPrefix', type = 'string' },
    { name = 'nkey', type = 'string' },
    { name = 'user', type = 'string' },
    { name = 'password', type = 'string' },
    { name = 'token', type = 'string' },
    { name = 'tls', type = 'object' },
  },

  -- The workspace/executeCommand commands of the language server.
  commands = {
    toggleTracepoint = 'riptrace.toggleTracepoint',
    showHits = 'riptrace.showHits',
    clearHits = 'riptrace.clearHits',
  },

  -- The keys of the language server's configuration (init_options).
  settings = {
    { name = 'nats', type = 'string' },
    { name = 'credentials', type = 'string' },
    { name = 'inboxPrefix', type = 'string' },
    { name = 'nkey', type = 'string' },
    { name = 'user', type = 'string' },
    { name = 'password', type = 'string' },
    { name = 'token', type = 'string' },
    { name = 'tls', type = 'object' },
    { name = 'prefix', type = 'string' },
    { name = 'hosts', type = 'array' },
    { name = 'processes', type = 'array' },
    { name = 'group', type = 'array' },
    { name = 'history', type = 'string' },
    { name = 'maxRecent', type = 'integer' },
    { name = 'backend', type = 'string', enum = { 'auto', 'ebpf', 'delve' } },
    { name = 'revision', type = 'string' },
    { name = 'recording', type = 'string' },
  },
}
