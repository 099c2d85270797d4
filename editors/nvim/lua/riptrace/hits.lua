-- The hits of a debug session, outside the REPL: the quickfix (or location)
-- list, a tree in a split (breakpoints → processes → recent hits) and the
-- timeline buffer (the session's hits in execution order across services).
-- They read the adapter's own requests through nvim-dap's session:request:
-- riptrace/hits, riptrace/timeline and riptrace/openHit (dap/hits.go), and
-- refresh when a riptraceHits event says something is new. <CR> on a hit
-- opens it as a snapshot in nvim-dap's scopes and frames.
local M = {}

-- The buffers that refresh on riptraceHits events, by kind.
local views = {}

local function session()
  local ok, dap = pcall(require, 'dap')
  if not ok or type(dap) ~= 'table' or not dap.session then
    return nil, 'riptrace: nvim-dap is not installed: the hits view reads a debug session'
  end
  local s = dap.session()
  if not s then
    return nil, 'riptrace: no debug session: start one with require("dap").continue() and the RipTrace configuration'
  end
  return s
end

-- request sends a RipTrace request to the session and calls cb(body), or
-- notifies the error.
-- on_err(message), if given, takes the error instead.
local function request(command, args, cb, on_err)
  local s, err = session()
  if not s then
    if on_err then
      return on_err(err)
    end
    vim.notify(err, vim.log.levels.WARN)
    return
  end
  s:request(command, args, function(e, body)
    if e then
      local msg = 'riptrace: ' .. (e.message or vim.inspect(e))
      if on_err then
        return on_err(msg)
      end
      vim.notify(msg, vim.log.levels.WARN)
      return
    end
    cb(body or {})
  end)
end

-- tracing reports whether a RipTrace debug session is running.
function M.tracing()
  local s = session()
  return s ~= nil and (s.config == nil or s.config.type == require('riptrace.contract').adapter)
end

-- clock is a hit's time as 15:04:05.123 (UTC), from its RFC 3339 time.
local function clock(iso)
  local hms, frac = tostring(iso or ''):match('T(%d%d:%d%d:%d%d)%.?(%d*)')
  if not hms then
    return '?'
  end
  return hms .. '.' .. (frac .. '000'):sub(1, 3)
end

local function mark(h)
  if h.late then
    return ' [late]'
  elseif h.uncertain then
    return ' [order uncertain]'
  end
  return ''
end

local function exe(h)
  return vim.fn.fnamemodify(h.exe or '?', ':t')
end

-- request_mark names the hit's request (the group setting, or its trace id).
local function request_mark(h)
  if h.group and h.group ~= '' then
    return ' [request ' .. h.group .. ']'
  end
  return ''
end

-- number names a hit as the debug adapter does: its message's seq, and its
-- part when the agent sent it in a batch (seq.part).
local function number(h)
  if h.part and h.part > 0 then
    return ('%d.%d'):format(h.seq, h.part)
  end
  return tostring(h.seq)
end

-- open_args are what riptrace/openHit takes to open the hit h.
local function open_args(h)
  return { seq = h.seq, part = h.part }
end

-- hit_text is one hit on one line: number, time, request, process and values.
function M.hit_text(h)
  return ('#%s %s%s%s %s %s[%d] %s'):format(number(h), clock(h.time), mark(h), request_mark(h), h.host, exe(h), h.pid, h.message or h.values or '')
end

-- open opens a hit as a snapshot: { seq = N, part = P }, { breakpoint = ID } or
-- { path = FILE, line = LINE }; cb(body) after, on_err(message) instead
-- of a notification.
function M.open(args, cb, on_err)
  request('riptrace/openHit', args, function(body)
    vim.notify('riptrace: snapshot of ' .. (body.title or '?') .. ': the scopes and frames show it; continue dismisses it')
    if cb then
      cb(body)
    end
  end, on_err)
end

-- snapshot opens the latest hit of the cursor's line as a snapshot, as a
-- click on a code lens does in VS Code (:RipTraceSnapshot).
function M.snapshot(cb)
  local line = vim.api.nvim_win_get_cursor(0)[1]
  M.open({ path = vim.api.nvim_buf_get_name(0), line = line }, cb)
end

-- quickfix fills the quickfix list (the window's location list with
-- loclist) with the session's recent hits, newest first per process
-- (:RipTraceHitsList).
function M.quickfix(loclist, cb)
  request('riptrace/hits', nil, function(body)
    local items = {}
    for _, bp in ipairs(body.breakpoints or {}) do
      for _, p in ipairs(bp.processes or {}) do
        for _, h in ipairs(p.hits or {}) do
          table.insert(items, { filename = h.path ~= '' and h.path or bp.path, lnum = h.line, text = ('bp %d %s'):format(bp.id, M.hit_text(h)) })
        end
      end
    end
    local what = { title = 'RipTrace hits', items = items }
    if loclist then
      vim.fn.setloclist(0, {}, ' ', what)
    else
      vim.fn.setqflist({}, ' ', what)
    end
    if cb then
      cb(items)
    end
  end)
end

-- scratch returns the buffer named name, made if needed, shown in a split.
local function scratch(name, split)
  local buf = vim.fn.bufnr(name)
  if buf == -1 then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, name)
    vim.api.nvim_buf_set_option(buf, 'bufhidden', 'hide')
    vim.api.nvim_buf_set_option(buf, 'swapfile', false)
    vim.api.nvim_buf_set_option(buf, 'modifiable', false)
  end
  if vim.fn.bufwinnr(buf) == -1 then
    vim.cmd(split)
    vim.api.nvim_win_set_buf(0, buf)
    -- One row a hit: values run off to the right rather than wrap.
    vim.api.nvim_win_set_option(0, 'wrap', false)
  end
  return buf
end

local function set_lines(buf, lines)
  vim.api.nvim_buf_set_option(buf, 'modifiable', true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.api.nvim_buf_set_option(buf, 'modifiable', false)
end

-- goto_hit shows the hit's line in the window the view was opened from,
-- then opens the hit.
local function goto_hit(view, node)
  if node.path and node.path ~= '' then
    local win = view.from
    if not (win and vim.api.nvim_win_is_valid(win)) then
      vim.cmd('wincmd p')
      win = vim.api.nvim_get_current_win()
    end
    vim.api.nvim_set_current_win(win)
    vim.cmd('edit ' .. vim.fn.fnameescape(node.path))
    pcall(vim.api.nvim_win_set_cursor, win, { node.line, 0 })
  end
  M.open(node.args)
end

-- render_tree draws the tree and remembers what each line opens.
local function render_tree(view, body)
  local lines, nodes = {}, {}
  for _, bp in ipairs(body.breakpoints or {}) do
    local where = ('%s:%d'):format(vim.fn.fnamemodify(bp.path, ':t'), bp.line)
    if bp['function'] and bp['function'] ~= '' then
      where = bp['function']
    end
    table.insert(lines, ('%s %s  %d hit%s · %s'):format(bp.verified and '●' or '○', where, bp.count, bp.count == 1 and '' or 's', bp.message))
    nodes[#lines] = { args = { breakpoint = bp.id }, path = bp.path, line = bp.line }
    for _, p in ipairs(bp.processes or {}) do
      table.insert(lines, ('  %s %s[%d]  %d hit%s'):format(p.host, exe(p), p.pid, p.count, p.count == 1 and '' or 's'))
      for _, h in ipairs(p.hits or {}) do
        table.insert(lines, ('    #%s %s%s  %s'):format(number(h), clock(h.time), mark(h), h.message or h.values or ''))
        nodes[#lines] = { args = open_args(h), path = h.path, line = h.line }
      end
    end
  end
  if #lines == 0 then
    lines = { 'No breakpoints in this session yet: set one with require("dap").toggle_breakpoint().' }
  end
  view.nodes = nodes
  set_lines(view.buf, lines)
end

-- render_timeline appends rows in execution order; once hits name
-- requests, a line marks where the request changes, as `riptrace timeline
-- --group` heads its blocks. Two refreshes can be in flight at once, both
-- asked from the same order: rows at or before the last shown are left out,
-- so that no hit shows twice.
local function render_timeline(view, body)
  local rows = {}
  for _, h in ipairs(body.hits or {}) do
    if h.order > view.since then
      table.insert(rows, h)
    end
  end
  if #rows == 0 then
    return
  end
  vim.api.nvim_buf_set_option(view.buf, 'modifiable', true)
  local first = #view.lines == 0
  local before = #view.lines
  for _, h in ipairs(rows) do
    local group = h.group or ''
    if (group ~= '' or view.grouped) and group ~= view.group then
      table.insert(view.lines, group ~= '' and ('── request %s ──'):format(group) or '── no request ──')
      view.grouped, view.group = true, group
    end
    local file = h.path and h.path ~= '' and vim.fn.fnamemodify(h.path, ':t') or '?'
    table.insert(view.lines, ('%s:%d  %s'):format(file, h.line, M.hit_text(h)))
    view.nodes[#view.lines] = { args = open_args(h), path = h.path, line = h.line }
    view.since = h.order
  end
  if first then
    vim.api.nvim_buf_set_lines(view.buf, 0, -1, false, view.lines)
  else
    vim.api.nvim_buf_set_lines(view.buf, -1, -1, false, vim.list_slice(view.lines, before + 1))
  end
  vim.api.nvim_buf_set_option(view.buf, 'modifiable', false)
end

local function refresh(view, cb)
  if view.kind == 'tree' then
    request('riptrace/hits', nil, function(body)
      render_tree(view, body)
      if cb then
        cb(view)
      end
    end)
  else
    request('riptrace/timeline', { since = view.since, limit = 500 }, function(body)
      render_timeline(view, body)
      if cb then
        cb(view)
      end
    end)
  end
end

-- listen refreshes the open views when the adapter says hits are new, at
-- most every 250 ms.
local function listen()
  local ok, dap = pcall(require, 'dap')
  if not ok or type(dap) ~= 'table' or not dap.listeners then
    return
  end
  local pending = false
  dap.listeners.after['event_riptraceHits'] = dap.listeners.after['event_riptraceHits'] or {}
  dap.listeners.after['event_riptraceHits']['riptrace.hits'] = function()
    if pending then
      return
    end
    pending = true
    vim.defer_fn(function()
      pending = false
      for _, view in pairs(views) do
        if vim.api.nvim_buf_is_valid(view.buf) and vim.fn.bufwinnr(view.buf) ~= -1 then
          refresh(view)
        end
      end
    end, 250)
  end
end

local function open_view(kind, name, split, cb)
  local from = vim.api.nvim_get_current_win()
  local buf = scratch(name, split)
  local view = views[kind]
  if not view or view.buf ~= buf then
    view = { kind = kind, buf = buf, nodes = {}, lines = {}, since = 0, group = '' }
    views[kind] = view
    local function open_at_cursor()
      local node = view.nodes[vim.api.nvim_win_get_cursor(0)[1]]
      if node then
        goto_hit(view, node)
      end
    end
    vim.keymap.set('n', '<CR>', open_at_cursor, { buffer = buf, desc = 'Open this hit as a snapshot' })
    -- A double click, as in the quickfix window: its first click put the
    -- cursor on the row (with 'mouse' set).
    vim.keymap.set('n', '<2-LeftMouse>', open_at_cursor, { buffer = buf, desc = 'Open this hit as a snapshot' })
    vim.keymap.set('n', 'R', function()
      refresh(view)
    end, { buffer = buf, desc = 'Refresh' })
  end
  view.from = from
  listen()
  refresh(view, cb)
  return view
end

-- tree shows the hits view in a split on the left (:RipTraceHitsTree).
function M.tree(cb)
  return open_view('tree', 'riptrace://hits', 'topleft vertical 60split', cb)
end

-- timeline shows the session's hits in execution order in a split below
-- (:RipTraceTimeline).
function M.timeline(cb)
  return open_view('timeline', 'riptrace://timeline', 'botright 12split', cb)
end

return M
