-- The plugin against a real fleet (editors/nvim_test.go TestNeovimFleet),
-- with the stand-in nvim-dap module on package.path: the adapter and the
-- configuration, the host picker over `riptrace hosts --json`, the
-- language server on a Go buffer, :RipTraceHosts, :RipTraceToggle (the Go
-- test checks the fleet's tracepoint bucket at each step), the code lens
-- and the virtual-text hints the hits bring, :RipTraceHits, and a second
-- :RipTraceToggle that removes the tracepoint.
local t = dofile(os.getenv('RT_TESTDATA') .. '/util.lua')
local out = t.out
local host, line = os.getenv('RT_HOST'), tonumber(os.getenv('RT_LINE'))
local api = vim.api

-- The picker picks the test's host and records what it offered.
local offered = {}
vim.ui.select = function(items, opts, on_choice)
  local labels = {}
  for _, item in ipairs(items) do
    table.insert(labels, opts.format_item(item))
  end
  table.insert(offered, { prompt = opts.prompt, items = labels })
  for _, item in ipairs(items) do
    if item.name == host then
      return on_choice(item, 1)
    end
  end
  on_choice(nil)
end

-- extmark_text returns the virtual text of namespace ns on line.
local function extmark_text(bufnr, ns, l)
  local texts = {}
  for _, m in ipairs(api.nvim_buf_get_extmarks(bufnr, ns, { l, 0 }, { l, -1 }, { details = true })) do
    for _, chunk in ipairs(m[4].virt_text or {}) do
      table.insert(texts, chunk[1])
    end
  end
  return table.concat(texts)
end

local function signs(bufnr)
  local placed = vim.fn.sign_getplaced(bufnr, { group = 'riptrace' })[1].signs
  return vim.tbl_map(function(s)
    return { lnum = s.lnum, name = s.name }
  end, placed)
end

t.run(function()
  package.path = os.getenv('RT_TESTDATA') .. '/dap/lua/?.lua;' .. package.path
  local riptrace = require('riptrace')
  assert(riptrace.setup({
    path = os.getenv('RT_BIN'),
    nats = os.getenv('RT_NATS'),
    processes = { os.getenv('RT_EXE') },
    history = '1m',
    capture = { args = true, locals = true },
  }))
  local dap = require('dap')
  out.dap = riptrace.dap
  out.adapter = dap.adapters.riptrace
  out.configurations = t.plain(dap.configurations.go)

  -- nvim-dap calls hosts when the session starts, in a coroutine.
  local picked
  local dap_run_co = coroutine.create(function(v)
    picked = v
  end)
  local thread = dap.configurations.go[1].hosts()
  out.hostsReturns = type(thread)
  assert(coroutine.resume(thread, dap_run_co))
  assert(vim.wait(30000, function()
    return coroutine.status(dap_run_co) == 'dead'
  end, 20), 'the host picker did not answer within 30s')
  out.dapHosts = picked

  -- Cancelling the picker aborts the session.
  local pick = vim.ui.select
  vim.ui.select = function(_, _, on_choice)
    on_choice(nil)
  end
  picked = nil
  dap_run_co = coroutine.create(function(v)
    picked = v
  end)
  assert(coroutine.resume(dap.configurations.go[1].hosts(), dap_run_co))
  assert(vim.wait(30000, function()
    return coroutine.status(dap_run_co) == 'dead'
  end, 20), 'the host picker did not answer within 30s')
  out.cancelAborts = picked == dap.ABORT
  vim.ui.select = pick

  vim.cmd('edit ' .. vim.fn.fnameescape(os.getenv('RT_FILE')))
  local bufnr = api.nvim_get_current_buf()
  local lsp = require('riptrace.lsp')
  assert(vim.wait(20000, function()
    local c = lsp.client(bufnr)
    return c ~= nil and c.server_capabilities ~= nil and c.server_capabilities.codeLensProvider ~= nil
  end, 20), 'riptrace lsp did not attach to the Go buffer within 20s')
  out.attached = lsp.client(bufnr).name
  out.features = lsp.features

  vim.cmd('RipTraceHosts')
  out.hostsNote = t.note_matching('hits and tracepoints on')
  out.offered = offered

  api.nvim_win_set_cursor(0, { line + 1, 0 })
  -- The server connects to NATS after it starts, and again after
  -- :RipTraceHosts changed its settings: until then it says it is not
  -- connected yet, and a user tries again.
  assert(vim.wait(20000, function()
    local seen = #t.notes
    vim.cmd('RipTraceToggle')
    local note = t.note_matching('tracing', 10000, seen)
    if note and note:find('^riptrace: tracing ') then
      out.tracing = note
      return true
    end
    return false
  end, 200), ':RipTraceToggle did not trace within 20s')
  out.signs = signs(bufnr)
  t.step('declared')

  -- No refresh here: the server asks for one when hits arrive.
  local ns = vim.lsp.codelens.__namespaces[lsp.client(bufnr).id]
  assert(vim.wait(30000, function()
    for _, l in ipairs(vim.lsp.codelens.get(bufnr)) do
      if l.range.start.line == line and l.command and l.command.title:find('hit') then
        out.lens = l.command.title
      end
    end
    out.lensText = extmark_text(bufnr, ns, line)
    out.hintText = extmark_text(bufnr, lsp.hint_ns, line)
    local hints = lsp.features.inlay_hints or out.hintText:find('n=%d') ~= nil
    return out.lens ~= nil and out.lensText ~= '' and hints
  end, 50), 'no code lens with hits and no hints on line ' .. line .. ' within 30s')

  -- float returns the text of the floating window, closing it.
  local function float(what)
    local text
    assert(vim.wait(10000, function()
      for _, w in ipairs(api.nvim_list_wins()) do
        if api.nvim_win_get_config(w).relative ~= '' then
          text = table.concat(api.nvim_buf_get_lines(api.nvim_win_get_buf(w), 0, -1, false), '\n')
          api.nvim_win_close(w, true)
          return true
        end
      end
      return false
    end, 20), what .. ' opened no float within 10s')
    return text
  end
  vim.cmd('RipTraceHits')
  out.hits = float(':RipTraceHits')
  -- The lens's command (riptrace.showHits) shows the same float.
  vim.lsp.codelens.run()
  out.lensRun = float('vim.lsp.codelens.run()')

  vim.cmd('RipTraceToggle')
  out.stopped = t.note_matching('stopped tracing ')
  out.signsAfter = signs(bufnr)
  t.step('removed')

  vim.cmd('checkhealth riptrace')
  out.health = table.concat(api.nvim_buf_get_lines(0, 0, -1, false), '\n')
end)
