-- The plugin without nvim-dap and without a fleet (editors/nvim_test.go
-- TestNeovimSetup): setup() succeeds, registers no adapter, rejects bad
-- options with a message, attaches the language server to a Go buffer,
-- and :RipTraceToggle says why it cannot trace.
local t = dofile(os.getenv('RT_TESTDATA') .. '/util.lua')
local out = t.out

t.run(function()
  local riptrace = require('riptrace')
  out.commands = vim.tbl_keys(vim.api.nvim_get_commands({}))
  pcall(vim.cmd, 'RipTraceToggle') -- errors show as exceptions under vim.cmd
  out.toggleBeforeSetup = t.notes[#t.notes]

  local bad = {}
  for _, opts in ipairs({ { hosts = 3 }, { bogus = true }, { maxHitsPerSecond = 1.5 }, { capture = { 'args' } }, 'nats', { backend = 'gdb' } }) do
    local ok, msg = riptrace.setup(opts)
    table.insert(bad, { ok = ok, msg = msg })
  end
  out.bad = bad

  -- No settings at all, then the ones of the test, which the running
  -- server takes.
  out.setupEmpty = riptrace.setup({ path = os.getenv('RT_BIN') })
  vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('RT_FILE')))
  local lsp = require('riptrace.lsp')
  assert(vim.wait(20000, function()
    local c = lsp.client(0)
    return c ~= nil and c.server_capabilities ~= nil and c.server_capabilities.codeLensProvider ~= nil
  end, 20), 'riptrace lsp did not attach to the Go buffer within 20s')
  out.attached = lsp.client(0).name
  out.root = lsp.client(0).config.root_dir

  out.setup = riptrace.setup({ path = os.getenv('RT_BIN'), nats = os.getenv('RT_NATS'), hosts = 'web-*' })
  out.dap = riptrace.dap
  out.dapLoaded = package.loaded.dap ~= nil
  out.settings = riptrace.config.settings
  out.features = lsp.features

  -- The server reconnects to the new address: until it gives up on it,
  -- the toggle may still find the first connection gone.
  assert(vim.wait(20000, function()
    local seen = #t.notes
    pcall(vim.cmd, 'RipTraceToggle')
    out.toggleWithoutNats = t.note_matching('toggling a tracepoint', 10000, seen)
    return out.toggleWithoutNats ~= nil and out.toggleWithoutNats:find('127.0.0.1:1 ', 1, true) ~= nil
  end, 100), 'no :RipTraceToggle error naming the new NATS address within 20s')

  vim.cmd('checkhealth riptrace')
  out.health = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
end)
