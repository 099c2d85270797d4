-- Registers the nvim-dap adapter and a configuration for Go buffers, when
-- nvim-dap is installed.
local contract = require('riptrace.contract')
local hosts = require('riptrace.hosts')

local M = {}

-- The name of the configuration, as in VS Code's launch.json snippet.
M.name = 'RipTrace: attach to fleet'

-- configuration returns the attach configuration of cfg. Without hosts in
-- cfg, hosts is a function nvim-dap calls when the session starts: it
-- returns a coroutine that resumes nvim-dap's with the hosts picked in
-- vim.ui.select.
function M.configuration(cfg, dap)
  local c = { type = contract.adapter, request = 'attach', name = M.name, cwd = '${workspaceFolder}' }
  for _, a in ipairs(contract.attributes) do
    if cfg.attach[a.name] ~= nil then
      c[a.name] = vim.deepcopy(cfg.attach[a.name])
    end
  end
  if c.hosts == nil then
    c.hosts = function()
      return coroutine.create(function(dap_run_co)
        hosts.pick(cfg, function(globs)
          if globs == nil then
            globs = dap.ABORT -- nil in nvim-dap versions without it: every host
          end
          coroutine.resume(dap_run_co, globs)
        end)
      end)
    end
  end
  return c
end

-- setup registers the adapter and the configuration with nvim-dap, and
-- returns whether it is installed.
function M.setup(cfg)
  local ok, dap = pcall(require, 'dap')
  if not ok or type(dap) ~= 'table' then
    return false
  end
  dap.adapters = dap.adapters or {}
  dap.configurations = dap.configurations or {}
  dap.adapters[contract.adapter] = { type = 'executable', command = cfg.path, args = { 'dap' } }
  local confs = dap.configurations.go or {}
  dap.configurations.go = confs
  local conf = M.configuration(cfg, dap)
  for i, c in ipairs(confs) do
    if c.type == conf.type and c.name == conf.name then
      confs[i] = conf -- setup() again replaces it
      return true
    end
  end
  table.insert(confs, conf)
  return true
end

return M
