-- Runs `riptrace lsp` for Go buffers and shows what it serves: code lenses,
-- inlay hints (natively where Neovim has them, as end-of-line virtual text
-- where it does not), the hits of a line, and tracepoints toggled from the
-- buffer. Every Neovim feature is detected, never inferred from a version.
local contract = require('riptrace.contract')

local M = {}

local api = vim.api
local LENS_REFRESH = 'workspace/codeLens/refresh'
local HINT_REFRESH = 'workspace/inlayHint/refresh'

-- What this Neovim has.
M.features = {
  start = type(vim.lsp.start) == 'function', -- 0.8
  inlay_hints = type(vim.lsp.inlay_hint) == 'table' and type(vim.lsp.inlay_hint.enable) == 'function', -- 0.10
  codelens_enable = type(vim.lsp.codelens.enable) == 'function', -- 0.12
  lens_refresh = vim.lsp.handlers[LENS_REFRESH] ~= nil,
}

-- The namespace of the inlay hints shown as virtual text.
M.hint_ns = api.nvim_create_namespace('riptrace_hints')

local state = {
  cfg = nil,
  clients = {}, -- root directory → client id, where vim.lsp.start is missing
  bufs = {}, -- bufnr → client id
  signs = {}, -- tracepoint id → { bufnr, sign id }
  quiet = {}, -- client id → requests whose window/showMessage is shown otherwise
}

local function notify(msg, level)
  vim.notify('riptrace: ' .. msg, level or vim.log.levels.INFO)
end

-- request sends a request through client, whose request is a method since
-- 0.11 and a plain function before.
local function request(client, method, params, handler, bufnr)
  if debug.getinfo(client.request, 'u').nparams == 5 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function notify_client(client, method, params)
  if debug.getinfo(client.notify, 'u').nparams == 3 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

-- client returns the riptrace client attached to bufnr, if it runs.
function M.client(bufnr)
  if bufnr == 0 then
    bufnr = api.nvim_get_current_buf()
  end
  local id = state.bufs[bufnr]
  -- Clients that stopped are gone from get_client_by_id.
  return id and vim.lsp.get_client_by_id(id) or nil
end

-- root_dir is the directory of the module (go.mod) or checkout (.git)
-- holding bufnr's file, or the working directory.
local function root_dir(bufnr)
  local dir = vim.fn.fnamemodify(api.nvim_buf_get_name(bufnr), ':p:h')
  for _, marker in ipairs({ 'go.mod', '.git' }) do
    local found
    if vim.fs and vim.fs.find then -- 0.8
      found = vim.fs.find(marker, { path = dir, upward = true })[1]
    else
      local path = vim.fn.escape(dir, ' ,;') .. ';'
      found = vim.fn.findfile(marker, path)
      if found == '' then
        found = vim.fn.finddir(marker, path)
      end
    end
    if found and found ~= '' then
      local path = vim.fn.fnamemodify(found, ':p'):gsub('/$', '')
      return vim.fn.fnamemodify(path, ':h')
    end
  end
  return vim.fn.getcwd()
end

-- Code lenses ------------------------------------------------------------

local function refresh_lenses(bufnr)
  if M.features.codelens_enable or not api.nvim_buf_is_loaded(bufnr) then
    return
  end
  -- 0.7 refreshes the current buffer and takes no arguments.
  api.nvim_buf_call(bufnr, function()
    vim.lsp.codelens.refresh({ bufnr = bufnr })
  end)
end

-- Inlay hints as virtual text ---------------------------------------------

-- hint_text is a hint's label; a value shown after a variable's name gets
-- the name in front, since at the line's end it is far from it.
local function hint_text(hint, text)
  local label = hint.label
  if type(label) == 'table' then
    local parts = {}
    for _, p in ipairs(label) do
      table.insert(parts, p.value or '')
    end
    label = table.concat(parts)
  end
  if type(label) ~= 'string' then
    return nil
  end
  if label:sub(1, 1) == '=' then
    local ok, col = pcall(vim.str_byteindex, text, hint.position.character, true)
    local name = ok and text:sub(1, col):match('[%w_]+$')
    if name then
      label = name .. label
    end
  end
  return label
end

-- render_hints shows hints at the end of their lines, replacing the ones
-- shown before.
function M.render_hints(bufnr, hints)
  api.nvim_buf_clear_namespace(bufnr, M.hint_ns, 0, -1)
  local lines, order = {}, {}
  for _, h in ipairs(hints or {}) do
    local l = h.position and h.position.line
    local text = l and api.nvim_buf_get_lines(bufnr, l, l + 1, false)[1]
    local label = text and hint_text(h, text)
    if label then
      if not lines[l] then
        lines[l] = {}
        table.insert(order, l)
      end
      table.insert(lines[l], label)
    end
  end
  for _, l in ipairs(order) do
    api.nvim_buf_set_extmark(bufnr, M.hint_ns, l, 0, {
      virt_text = { { table.concat(lines[l], ' '), 'RipTraceHint' } },
      virt_text_pos = 'eol',
      hl_mode = 'combine',
    })
  end
end

local function refresh_hints(bufnr)
  local client = M.client(bufnr)
  if M.features.inlay_hints or not client or not api.nvim_buf_is_loaded(bufnr) then
    return
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = { start = { line = 0, character = 0 }, ['end'] = { line = api.nvim_buf_line_count(bufnr), character = 0 } },
  }
  request(client, 'textDocument/inlayHint', params, function(err, result)
    if not err and api.nvim_buf_is_loaded(bufnr) then
      M.render_hints(bufnr, result)
    end
  end, bufnr)
end

-- refresh_client calls refresh_buf for each buffer of client_id.
local function refresh_client(client_id, refresh_buf)
  for bufnr, id in pairs(state.bufs) do
    if id == client_id then
      refresh_buf(bufnr)
    end
  end
end

-- Commands ---------------------------------------------------------------

-- execute runs a command of the server for bufnr and calls cb(err, result).
local function execute(bufnr, command, args, cb)
  local client = M.client(bufnr)
  if not client then
    cb({ message = 'riptrace lsp is not running for this buffer: call require("riptrace").setup() and open a Go file (:help riptrace-setup)' })
    return
  end
  request(client, 'workspace/executeCommand', { command = command, arguments = args }, function(err, result)
    cb(err, result)
  end, bufnr)
end

local function cursor_args(bufnr, line)
  bufnr = bufnr == 0 and api.nvim_get_current_buf() or bufnr
  if line == nil then
    line = api.nvim_win_get_cursor(0)[1] - 1
  end
  return bufnr, { vim.uri_from_bufnr(bufnr), line }
end

-- toggle traces the line (0-based; the cursor's by default) of bufnr, or
-- stops tracing it, and calls cb(err, result) with the server's answer
-- {id, traced, location}.
function M.toggle(bufnr, line, cb)
  local args
  bufnr, args = cursor_args(bufnr or 0, line)
  execute(bufnr, contract.commands.toggleTracepoint, args, function(err, res)
    if err then
      notify('toggling a tracepoint: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif type(res) == 'table' and res.id then
      local where = ('%s:%d'):format((res.location or {}).path or '?', (res.location or {}).line or 0)
      local placed = state.signs[res.id]
      if placed then
        pcall(vim.fn.sign_unplace, 'riptrace', { buffer = placed[1], id = placed[2] })
        state.signs[res.id] = nil
      end
      if res.traced then
        local id = vim.fn.sign_place(0, 'riptrace', 'RipTraceTracepoint', bufnr, { lnum = args[2] + 1 })
        state.signs[res.id] = { bufnr, id }
        notify(('tracing %s with the %s backend'):format(where, res.backend or 'auto'))
      else
        notify('stopped tracing ' .. where)
      end
      refresh_lenses(bufnr)
    end
    if cb then
      cb(err, res)
    end
  end)
end

-- show_hits shows the recent hits of the line (the cursor's by default) in
-- a floating window and calls cb(err, markdown).
function M.show_hits(bufnr, line, cb)
  local args
  bufnr, args = cursor_args(bufnr or 0, line)
  local client = M.client(bufnr)
  if client then
    -- The server also sends the hits as window/showMessage, for editors
    -- that show no result; here the float shows them.
    state.quiet[client.id] = (state.quiet[client.id] or 0) + 1
  end
  execute(bufnr, contract.commands.showHits, args, function(err, md)
    if client then
      state.quiet[client.id] = state.quiet[client.id] - 1
    end
    if err then
      notify('showing hits: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif type(md) == 'string' then
      vim.lsp.util.open_floating_preview(vim.split(md, '\n', { trimempty = true }), 'markdown', { focus_id = 'riptrace_hits' })
    end
    if cb then
      cb(err, md)
    end
  end)
end

-- set_hosts makes every riptrace client show hits of, and toggle
-- tracepoints on, the hosts matching globs ({}: every host).
-- The server reconnects with the new settings, and the tracepoints
-- toggled before go with the old connection: their signs go too.
function M.set_hosts(globs)
  state.cfg.settings.hosts = globs
  for id, placed in pairs(state.signs) do
    pcall(vim.fn.sign_unplace, 'riptrace', { buffer = placed[1], id = placed[2] })
    state.signs[id] = nil
  end
  local seen = {}
  for _, id in pairs(state.bufs) do
    local client = not seen[id] and vim.lsp.get_client_by_id(id)
    seen[id] = true
    if client then
      notify_client(client, 'workspace/didChangeConfiguration', { settings = { riptrace = { hosts = globs } } })
    end
  end
end

-- Starting the server ----------------------------------------------------

local function on_attach(client, bufnr)
  state.bufs[bufnr] = client.id
  local group = api.nvim_create_augroup('riptrace_buffer_' .. bufnr, { clear = true })
  if M.features.inlay_hints then
    -- enable(true, filter) since 0.10's release; enable(bufnr, true) before.
    if not pcall(vim.lsp.inlay_hint.enable, true, { bufnr = bufnr }) then
      pcall(vim.lsp.inlay_hint.enable, bufnr, true)
    end
  end
  if M.features.codelens_enable then
    vim.lsp.codelens.enable(true, { bufnr = bufnr })
  end
  api.nvim_create_autocmd({ 'BufEnter', 'CursorHold', 'InsertLeave', 'BufWritePost' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      refresh_lenses(bufnr)
      refresh_hints(bufnr)
    end,
  })
  api.nvim_create_autocmd('BufWipeout', {
    group = group,
    buffer = bufnr,
    callback = function()
      state.bufs[bufnr] = nil
      pcall(api.nvim_del_augroup_by_id, group)
    end,
  })
  refresh_lenses(bufnr)
  refresh_hints(bufnr)
end

local function client_config(root)
  local cfg = state.cfg
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.workspace = caps.workspace or {}
  local handlers = {
    ['window/showMessage'] = function(err, result, ctx, config)
      if (state.quiet[ctx.client_id] or 0) > 0 then
        return vim.NIL
      end
      return vim.lsp.handlers['window/showMessage'](err, result, ctx, config)
    end,
  }
  -- The server asks for refreshes when hits arrive, if the client says it
  -- can take them; where Neovim cannot, the plugin does.
  if not M.features.lens_refresh then
    caps.workspace.codeLens = { refreshSupport = true }
    handlers[LENS_REFRESH] = function(_, _, ctx)
      refresh_client(ctx.client_id, refresh_lenses)
      return vim.NIL
    end
  end
  if not M.features.inlay_hints then
    caps.workspace.inlayHint = { refreshSupport = true }
    handlers[HINT_REFRESH] = function(_, _, ctx)
      refresh_client(ctx.client_id, refresh_hints)
      return vim.NIL
    end
  end
  return {
    name = 'riptrace',
    cmd = { cfg.path, 'lsp' },
    root_dir = root,
    -- An empty table would go out as [], which is no settings object.
    init_options = next(cfg.settings) and cfg.settings or vim.empty_dict(),
    capabilities = caps,
    handlers = handlers,
    -- A lens runs its command here: during a debug session it opens the
    -- line's latest hit as a snapshot; otherwise, or when the line has no
    -- breakpoint of the session, the hits show in a float.
    commands = {
      [contract.commands.showHits] = function(command, ctx)
        local args = command.arguments or {}
        local hits = require('riptrace.hits')
        if hits.tracing() and type(args[2]) == 'number' then
          hits.open({ path = api.nvim_buf_get_name(ctx.bufnr), line = args[2] + 1 }, nil, function()
            M.show_hits(ctx.bufnr, args[2])
          end)
          return
        end
        M.show_hits(ctx.bufnr, args[2])
      end,
    },
    on_attach = on_attach,
  }
end

-- attach starts (or reuses) the language server of bufnr's module and
-- attaches it, returning the client id.
function M.attach(bufnr)
  if bufnr == 0 then
    bufnr = api.nvim_get_current_buf()
  end
  if not api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= '' or api.nvim_buf_get_name(bufnr) == '' then
    return nil
  end
  local root = root_dir(bufnr)
  local ok, id = pcall(function()
    if M.features.start then
      return api.nvim_buf_call(bufnr, function()
        return vim.lsp.start(client_config(root), { bufnr = bufnr })
      end)
    end
    local id = state.clients[root]
    if not id or not vim.lsp.get_client_by_id(id) then
      id = vim.lsp.start_client(client_config(root))
      state.clients[root] = id
    end
    if id then
      vim.lsp.buf_attach_client(bufnr, id)
    end
    return id
  end)
  if not ok or not id then
    notify(('starting `%s lsp` failed: %s; install riptrace or set path in require("riptrace").setup()'):format(state.cfg.path, tostring(id)), vim.log.levels.ERROR)
    return nil
  end
  return id
end

function M.setup(cfg)
  state.cfg = cfg
  -- Servers started by an earlier setup() take the new settings.
  local seen = {}
  for _, id in pairs(state.bufs) do
    local client = not seen[id] and vim.lsp.get_client_by_id(id)
    seen[id] = true
    if client and next(cfg.settings) then
      notify_client(client, 'workspace/didChangeConfiguration', { settings = { riptrace = cfg.settings } })
    end
  end
  vim.fn.sign_define('RipTraceTracepoint', { text = '●', texthl = 'DiagnosticInfo' })
  vim.cmd('highlight default link RipTraceHint Comment')
  local group = api.nvim_create_augroup('riptrace', { clear = true })
  api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = 'go',
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(bufnr) and vim.bo[bufnr].filetype == 'go' then
      M.attach(bufnr)
    end
  end
end

return M
