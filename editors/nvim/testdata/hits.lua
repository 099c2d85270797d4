-- The hits of a debug session in Neovim (editors/nvim_test.go
-- TestNeovimHitsView): the stand-in nvim-dap module runs the configuration
-- setup() registered against a real `riptrace dap`, a real fleet and a real
-- target; then :RipTraceHitsList fills the quickfix list (with ! the
-- location list), :RipTraceHitsTree draws breakpoints → processes → hits
-- and <CR> on a hit opens it as a snapshot, :RipTraceTimeline lists hits in
-- execution order, each request under a line naming it (group), and <CR>
-- or a double click jumps to the line and opens the hit, and :RipTraceSnapshot opens the latest hit of the cursor's
-- line, as a code lens click does.
local t = dofile(os.getenv('RT_TESTDATA') .. '/util.lua')
local out = t.out
local host, line, src = os.getenv('RT_HOST'), tonumber(os.getenv('RT_LINE')), os.getenv('RT_FILE')
local api = vim.api

-- event waits for an event of the stand-in's log, after the first `after`,
-- for which ok(body) is true, and returns its body.
local function event(name, ok, after, ms)
  local dap = require('dap')
  local found
  vim.wait(ms or 30000, function()
    for i = (after or 0) + 1, #dap._events do
      local e = dap._events[i]
      if e.event == name and ok(e.body or {}) then
        found = e.body
        return true
      end
    end
    return false
  end, 20)
  return found
end

local function press_enter()
  api.nvim_feedkeys(api.nvim_replace_termcodes('<CR>', true, false, true), 'x', false)
end

-- cursor_to puts the cursor on the first line of buf matching pattern and
-- returns the line.
local function cursor_to(buf, pattern)
  for i, l in ipairs(api.nvim_buf_get_lines(buf, 0, -1, false)) do
    if l:find(pattern) then
      api.nvim_set_current_win(vim.fn.bufwinid(buf))
      api.nvim_win_set_cursor(0, { i, 0 })
      return l
    end
  end
end

t.run(function()
  package.path = os.getenv('RT_TESTDATA') .. '/dap/lua/?.lua;' .. package.path
  local riptrace = require('riptrace')
  assert(riptrace.setup({
    path = os.getenv('RT_BIN'),
    nats = os.getenv('RT_NATS'),
    hosts = { host },
    processes = { os.getenv('RT_EXE') },
    backend = 'delve',
    capture = { args = true, locals = true },
    group = { 'it.ID' },
  }))
  local dap = require('dap')
  -- What nvim-dap would run: the registered adapter and configuration,
  -- with the variables it expands.
  local config = vim.deepcopy(dap.configurations.go[1])
  config.cwd = os.getenv('RT_ROOT')
  local attached, attach_err = false, nil
  dap._attach(dap.adapters.riptrace, config, function(err)
    attached, attach_err = true, err
  end)
  assert(vim.wait(30000, function()
    return attached
  end, 20), 'no attach response within 30s')
  assert(not attach_err, 'attach: ' .. vim.inspect(attach_err))
  out.backendInConfig = config.backend

  vim.cmd('edit ' .. vim.fn.fnameescape(src))
  local srcbuf = api.nvim_get_current_buf()
  local set
  dap.session():request('setBreakpoints', { source = { path = src }, breakpoints = { { line = line } } }, function(err, body)
    set = { err = err, body = body }
  end)
  assert(vim.wait(30000, function()
    return set ~= nil
  end, 20), 'no setBreakpoints response')
  assert(not set.err, vim.inspect(set.err))
  local verified = event('breakpoint', function(b)
    return b.breakpoint and b.breakpoint.verified
  end)
  out.verified = verified and verified.breakpoint.message
  assert(event('riptraceHits', function(b)
    return b.count and b.count >= 1 and b.breakpoints and #b.breakpoints >= 1
  end), 'no riptraceHits event with new hits')

  -- The quickfix list.
  local items
  riptrace.hits_list(false, function(it)
    items = it
  end)
  assert(vim.wait(10000, function()
    return items ~= nil
  end, 20), ':RipTraceHitsList never filled the list')
  local qf = vim.fn.getqflist({ title = 1, items = 1 })
  out.qfTitle = qf.title
  out.qf = vim.tbl_map(function(i)
    return { lnum = i.lnum, file = api.nvim_buf_get_name(i.bufnr), text = i.text }
  end, qf.items)

  -- :RipTraceHitsList! fills the window's location list instead.
  vim.cmd('RipTraceHitsList!')
  vim.wait(10000, function()
    return #vim.fn.getloclist(0) > 0
  end, 20)
  local ll = vim.fn.getloclist(0, { title = 1, items = 1 })
  out.llTitle = ll.title
  out.ll = #ll.items

  -- The tree; <CR> on a hit opens it.
  vim.cmd('RipTraceHitsTree')
  local tree = vim.fn.bufnr('riptrace://hits')
  assert(vim.wait(10000, function()
    return tree ~= -1 and #api.nvim_buf_get_lines(tree, 0, -1, false) >= 3
  end, 20), ':RipTraceHitsTree drew nothing')
  out.tree = api.nvim_buf_get_lines(tree, 0, -1, false)
  local hitLine = cursor_to(tree, '^    #%d+')
  out.treeHit = hitLine
  -- A hit is numbered seq, or seq.part when it came in a batch (under load).
  local seq = hitLine:match('#([%d.]*%d)')
  local before = #dap._events
  press_enter()
  local stopped = event('stopped', function(b)
    return (b.description or ''):find('hit #' .. seq .. ' on ', 1, true) ~= nil
  end, before)
  out.treeStopped = stopped and stopped.description

  -- The timeline; <CR> jumps to the line and opens the hit.
  vim.cmd('RipTraceTimeline')
  local tl = vim.fn.bufnr('riptrace://timeline')
  assert(vim.wait(10000, function()
    return tl ~= -1 and #api.nvim_buf_get_lines(tl, 0, -1, false) >= 3
  end, 20), ':RipTraceTimeline listed nothing')
  out.timeline = api.nvim_buf_get_lines(tl, 0, -1, false)
  local row = cursor_to(tl, '#%d+')
  local rowSeq = row:match('#([%d.]*%d)')
  before = #dap._events
  press_enter()
  stopped = event('stopped', function(b)
    return (b.description or ''):find('hit #' .. rowSeq .. ' on ', 1, true) ~= nil
  end, before)
  out.timelineStopped = stopped and stopped.description
  out.timelineJump = { file = api.nvim_buf_get_name(0), line = api.nvim_win_get_cursor(0)[1] }

  -- A double click on another row of the timeline does the same.
  vim.o.mouse = 'a'
  local tlwin = vim.fn.bufwinid(tl)
  local rows = api.nvim_buf_get_lines(tl, 0, -1, false)
  local clickLine = math.min(#rows, 3)
  while clickLine < #rows and not rows[clickLine]:find('#%d+') do
    clickLine = clickLine + 1 -- a line naming a request, not a hit
  end
  local clickSeq = rows[clickLine]:match('#([%d.]*%d)')
  api.nvim_win_set_cursor(tlwin, { 1, 0 })
  local pos = vim.fn.screenpos(tlwin, clickLine, 1)
  -- The <CR> above left the cursor in the source window on the hit's
  -- line: move it away, so that the jump shows.
  api.nvim_win_set_cursor(0, { 1, 0 })
  before = #dap._events
  for _ = 1, 2 do
    api.nvim_input_mouse('left', 'press', '', 0, pos.row - 1, pos.col - 1)
    api.nvim_input_mouse('left', 'release', '', 0, pos.row - 1, pos.col - 1)
  end
  local function clicked(b)
    return (b.description or ''):find('hit #' .. clickSeq .. ' on ', 1, true) ~= nil
  end
  t.main_loop(10000, function()
    return event('stopped', clicked, before, 0) ~= nil
  end)
  stopped = event('stopped', clicked, before, 0)
  out.clickStopped = stopped and stopped.description
  out.clickJump = { file = api.nvim_buf_get_name(0), line = api.nvim_win_get_cursor(0)[1] }

  -- :RipTraceSnapshot on the traced line: its latest hit.
  api.nvim_set_current_buf(srcbuf)
  api.nvim_win_set_cursor(0, { line, 0 })
  before = #dap._events
  vim.cmd('RipTraceSnapshot')
  stopped = event('stopped', function(b)
    return (b.description or ''):find('Snapshot of hit #', 1, true) ~= nil
  end, before)
  out.snapshotStopped = stopped and stopped.description

  -- Running the line's code lens does the same during a session.
  assert(vim.wait(30000, function()
    for _, l in ipairs(vim.lsp.codelens.get(srcbuf)) do
      if l.range.start.line == line - 1 and l.command and l.command.title:find('hit') then
        return true
      end
    end
    return false
  end, 50), 'no code lens with hits on line ' .. line .. ' within 30s')
  before = #dap._events
  vim.lsp.codelens.run()
  stopped = event('stopped', function(b)
    return (b.description or ''):find('Snapshot of hit #', 1, true) ~= nil
  end, before)
  out.lensStopped = stopped and stopped.description

  -- The timeline grows as hits come.
  local n = #api.nvim_buf_get_lines(tl, 0, -1, false)
  vim.wait(10000, function()
    return #api.nvim_buf_get_lines(tl, 0, -1, false) > n
  end, 50)
  out.timelineGrew = #api.nvim_buf_get_lines(tl, 0, -1, false) > n

  local closed = false
  dap._close(function()
    closed = true
  end)
  vim.wait(10000, function()
    return closed
  end, 20)
end)
