-- RipTrace for Neovim: thin glue over `riptrace lsp` and `riptrace dap`.
--
--   require('riptrace').setup({ nats = 'nats://127.0.0.1:4222', processes = { 'github.com/acme/*' } })
--
-- See :help riptrace.
local M = {}

-- The checked options of the last setup(), nil before.
M.config = nil
-- Whether setup() found nvim-dap and registered the adapter.
M.dap = false

local function fail(msg)
  vim.notify(msg, vim.log.levels.ERROR)
  return false, msg
end

-- setup checks opts, registers the nvim-dap adapter and configuration if
-- nvim-dap is installed, and starts `riptrace lsp` for Go buffers. It
-- returns true, or false and the message it showed.
function M.setup(opts)
  local cfg, err = require('riptrace.config').parse(opts)
  if not cfg then
    return fail(err)
  end
  if vim.fn.executable(cfg.path) ~= 1 then
    vim.notify(('riptrace: %s is not an executable: install riptrace (go install github.com/riptrace/riptrace/cmd/riptrace@latest) or set path in setup()'):format(cfg.path), vim.log.levels.WARN)
  end
  M.config = cfg
  M.dap = require('riptrace.dap').setup(cfg)
  require('riptrace.lsp').setup(cfg)
  return true
end

local function configured()
  if M.config then
    return true
  end
  fail('riptrace: call require("riptrace").setup() in your config first (:help riptrace-setup)')
  return false
end

-- toggle traces the cursor's line, or stops tracing it (:RipTraceToggle).
function M.toggle(cb)
  if configured() then
    require('riptrace.lsp').toggle(0, nil, cb)
  end
end

-- hits shows the recent hits of the cursor's line (:RipTraceHits).
function M.hits(cb)
  if configured() then
    require('riptrace.lsp').show_hits(0, nil, cb)
  end
end

-- hits_list puts the debug session's recent hits in the quickfix list (the
-- window's location list with loclist) and calls cb with the items
-- (:RipTraceHitsList).
function M.hits_list(loclist, cb)
  require('riptrace.hits').quickfix(loclist, cb)
end

-- pick_hosts picks the hosts whose hits the buffers show and where
-- :RipTraceToggle traces (:RipTraceHosts), and calls cb with their globs.
function M.pick_hosts(cb)
  if not configured() then
    return
  end
  require('riptrace.hosts').pick(M.config, function(globs)
    if globs then
      require('riptrace.lsp').set_hosts(globs)
      vim.notify('riptrace: hits and tracepoints on ' .. (#globs == 0 and 'every host' or table.concat(globs, ', ')))
    end
    if cb then
      cb(globs)
    end
  end)
end

return M
