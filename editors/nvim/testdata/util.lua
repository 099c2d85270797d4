-- Helpers of the test scripts: results as JSON, captured notifications, and
-- steps the Go test checks before the script goes on.
local M = {}

M.out = {}
M.notes = {}

local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(M.notes, msg)
  return notify(msg, level, opts)
end

function M.write()
  local f = assert(io.open(os.getenv('RT_OUT'), 'w'))
  f:write(vim.fn.json_encode(M.out))
  f:close()
end

-- plain returns v with functions and threads named, for JSON.
function M.plain(v)
  if type(v) == 'table' then
    local t = {}
    for k, x in pairs(v) do
      t[k] = M.plain(x)
    end
    return t
  elseif type(v) == 'function' or type(v) == 'thread' then
    return '<' .. type(v) .. '>'
  end
  return v
end

-- note_matching waits for a notification matching pattern, after the
-- first `after` ones, and returns it.
function M.note_matching(pattern, ms, after)
  local found
  vim.wait(ms or 20000, function()
    for i = (after or 0) + 1, #M.notes do
      local n = M.notes[i]
      if n:find(pattern) then
        found = n
        return true
      end
    end
    return false
  end, 20)
  return found
end

-- step hands data to the Go test as $RT_SYNC/name and waits for it to
-- write name.ack.
function M.step(name, data)
  local dir = os.getenv('RT_SYNC')
  local f = assert(io.open(dir .. '/' .. name .. '.tmp', 'w'))
  f:write(vim.fn.json_encode(data or {}))
  f:close()
  assert(os.rename(dir .. '/' .. name .. '.tmp', dir .. '/' .. name))
  assert(vim.wait(60000, function()
    return vim.loop.fs_stat(dir .. '/' .. name .. '.ack') ~= nil
  end, 20), 'the test did not check step ' .. name .. ' within 60s')
end

-- run runs f, records its error, writes the results and quits. f runs in
-- a coroutine, so that main_loop can hand Neovim its main loop.
function M.run(f)
  local co = coroutine.create(function()
    local ok, err = xpcall(f, debug.traceback)
    if not ok then
      M.out.error = tostring(err)
    end
    M.out.notes = M.notes
    M.write()
    vim.cmd('qa!')
  end)
  local ok, err = coroutine.resume(co)
  if not ok then
    M.out.error = tostring(err)
    M.write()
    vim.cmd('qa!')
  end
end

-- main_loop returns to Neovim's main loop until ok() is true or ms pass,
-- then goes on with the script. Input sent with nvim_input_mouse is read
-- there only: vim.wait runs callbacks but reads no input.
function M.main_loop(ms, ok)
  local co = coroutine.running()
  local deadline = vim.loop.now() + ms
  local function check()
    if ok() or vim.loop.now() > deadline then
      assert(coroutine.resume(co))
    else
      vim.defer_fn(check, 20)
    end
  end
  vim.defer_fn(check, 20)
  coroutine.yield()
end

return M
