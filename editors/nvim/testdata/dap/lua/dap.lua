-- A stand-in for nvim-dap in the plugin's tests (nvim-dap is GPL-3.0 and in
-- neither Debian nor npm): the module tables a plugin fills, adapters and
-- configurations, the ABORT sentinel a configuration function returns to
-- cancel a session, and the part of nvim-dap's session API the plugin uses
-- (dap.session(), session:request(command, args, cb), session.config and
-- dap.listeners.after['event_<name>']), over a real adapter process that
-- _attach starts. editors/nvim_test.go puts it on package.path.
local M = {
  adapters = {},
  configurations = {},
  ABORT = setmetatable({}, {
    __tostring = function()
      return 'dap.ABORT'
    end,
  }),
  listeners = { before = {}, after = {} },
  -- Every event received, in order, for the tests: { event = name, body = ... }.
  _events = {},
}

local current

function M.session()
  return current
end

local Session = {}
Session.__index = Session

-- request sends a request and calls cb(err, body) on the main loop, as
-- nvim-dap does.
function Session:request(command, arguments, cb)
  self.seq = self.seq + 1
  local msg = { seq = self.seq, type = 'request', command = command, arguments = arguments }
  if arguments == nil then
    msg.arguments = nil
  end
  self.callbacks[self.seq] = cb or function() end
  local data = vim.json.encode(msg)
  self.stdin:write(('Content-Length: %d\r\n\r\n%s'):format(#data, data))
end

function Session:_dispatch(msg)
  if msg.type == 'response' then
    local cb = self.callbacks[msg.request_seq]
    self.callbacks[msg.request_seq] = nil
    if cb then
      if msg.success then
        cb(nil, msg.body)
      else
        cb({ message = msg.message, body = msg.body }, nil)
      end
    end
  elseif msg.type == 'event' then
    table.insert(M._events, { event = msg.event, body = msg.body })
    for _, l in pairs(M.listeners.after['event_' .. msg.event] or {}) do
      l(self, msg.body)
    end
  end
end

-- _attach starts adapter (an executable adapter table) and runs
-- initialize and attach with config; cb(err) when attached.
function M._attach(adapter, config, cb)
  local stdin, stdout = vim.loop.new_pipe(false), vim.loop.new_pipe(false)
  local s = setmetatable({ seq = 0, callbacks = {}, stdin = stdin, config = config }, Session)
  s.handle = vim.loop.spawn(adapter.command, { args = adapter.args, stdio = { stdin, stdout, nil } }, function() end)
  local buf = ''
  stdout:read_start(function(err, chunk)
    if err or not chunk then
      return
    end
    buf = buf .. chunk
    while true do
      local header_end = buf:find('\r\n\r\n', 1, true)
      if not header_end then
        break
      end
      local len = tonumber(buf:sub(1, header_end):match('Content%-Length: (%d+)'))
      if #buf < header_end + 3 + len then
        break
      end
      local body = buf:sub(header_end + 4, header_end + 3 + len)
      buf = buf:sub(header_end + 4 + len)
      local msg = vim.json.decode(body)
      vim.schedule(function()
        s:_dispatch(msg)
      end)
    end
  end)
  current = s
  s:request('initialize', { adapterID = 'riptrace', linesStartAt1 = true, pathFormat = 'path' }, function(err)
    if err then
      return cb(err)
    end
    s:request('attach', config, function(aerr)
      cb(aerr)
    end)
  end)
  return s
end

-- _close disconnects and stops the adapter.
function M._close(cb)
  local s = current
  current = nil
  if not s then
    return cb and cb()
  end
  s:request('disconnect', vim.empty_dict(), function()
    s.stdin:close()
    if cb then
      cb()
    end
  end)
end

return M
