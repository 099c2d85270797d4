-- Drives `riptrace lsp` from headless Neovim 0.7 the way a user's config
-- does (vim.lsp.start_client + buf_attach_client), for lsp/editors_test.go:
-- waits for a code lens with hits on a traced line (vim.lsp.codelens), then
-- asks for inlay hints with a raw textDocument/inlayHint request (0.7 has no
-- inlay hint support of its own). Writes what it saw as JSON to $RT_OUT.
local bin, root, file = os.getenv('RT_BIN'), os.getenv('RT_ROOT'), os.getenv('RT_FILE')
local line, opts, out = tonumber(os.getenv('RT_LINE')), os.getenv('RT_OPTIONS'), os.getenv('RT_OUT')

local function write(res)
  local f = assert(io.open(out, 'w'))
  f:write(vim.fn.json_encode(res))
  f:close()
end

local ok, err = pcall(function()
  vim.cmd('edit ' .. vim.fn.fnameescape(file))
  local bufnr = vim.api.nvim_get_current_buf()
  local id = vim.lsp.start_client({
    name = 'riptrace',
    cmd = { bin, 'lsp' },
    root_dir = root,
    init_options = vim.fn.json_decode(opts),
  })
  assert(id, 'vim.lsp.start_client failed')
  assert(vim.lsp.buf_attach_client(bufnr, id), 'vim.lsp.buf_attach_client failed')
  local client
  assert(vim.wait(10000, function()
    client = vim.lsp.get_client_by_id(id)
    return client ~= nil and client.server_capabilities ~= nil and client.server_capabilities.codeLensProvider ~= nil
  end, 20), 'riptrace lsp did not initialize within 10s')

  local title
  local lenses
  local found = vim.wait(30000, function()
    vim.lsp.codelens.refresh()
    lenses = vim.lsp.codelens.get(bufnr) or {}
    for _, l in ipairs(lenses) do
      if l.range.start.line == line and l.command and l.command.title:find('hit') then
        title = l.command.title
        return true
      end
    end
    return false
  end, 200)
  assert(found, 'no code lens with hits on line ' .. line .. ' within 30s; last: ' .. vim.inspect(lenses))

  local resp, rerr = client.request_sync('textDocument/inlayHint', {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = vim.api.nvim_buf_line_count(bufnr), character = 0 } },
  }, 10000, bufnr)
  assert(resp and not resp.err, 'textDocument/inlayHint failed: ' .. vim.inspect(rerr or (resp and resp.err)))
  write({ lens = title, hints = resp.result })
  vim.lsp.stop_client(id)
  vim.wait(5000, function() return vim.lsp.client_is_stopped(id) end, 20)
end)
if not ok then
  write({ error = tostring(err) })
end
vim.cmd('qa!')
