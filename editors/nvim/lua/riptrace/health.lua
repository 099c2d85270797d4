-- :checkhealth riptrace: the binary, the fleet, nvim-dap and what this
-- Neovim shows natively.
local M = {}

-- vim.health since 0.10, the health module before.
local health = vim.health or require('health')
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local err = health.error or health.report_error
local info = health.info or health.report_info

-- run runs argv for at most ms and returns its exit code and output.
local function run(argv, env, ms)
  local out = {}
  local function collect(_, data)
    vim.list_extend(out, data)
  end
  local okj, job = pcall(vim.fn.jobstart, argv, { env = env, on_stdout = collect, on_stderr = collect, stdout_buffered = true, stderr_buffered = true })
  if not okj or job <= 0 then
    return -1, 'cannot run ' .. argv[1]
  end
  local code = vim.fn.jobwait({ job }, ms)[1]
  if code == -1 then
    vim.fn.jobstop(job)
    return -1, ('no answer within %ds'):format(ms / 1000)
  end
  return code, vim.trim(table.concat(out, '\n'))
end

function M.check()
  start('riptrace')
  local riptrace = require('riptrace')
  local cfg = riptrace.config
  if not cfg then
    warn('setup() was not called', { 'call require("riptrace").setup() in your config (:help riptrace-setup)' })
    cfg = require('riptrace.config').parse({})
  end

  local code, out = run({ cfg.path, 'version' }, nil, 5000)
  if code ~= 0 then
    err(('%s version: %s'):format(cfg.path, out), { 'install riptrace, or set path in setup()' })
    return
  end
  ok(('%s: %s'):format(vim.fn.exepath(cfg.path) ~= '' and vim.fn.exepath(cfg.path) or cfg.path, out))

  local argv, env = require('riptrace.hosts').command(cfg)
  code, out = run(argv, env, 10000)
  local hosts = code == 0 and select(2, pcall(vim.fn.json_decode, out))
  if type(hosts) ~= 'table' then
    err(('%s: %s'):format(table.concat(argv, ' ', 1, 3), out), { 'start a NATS server with `riptrace server`, or set nats in setup()' })
  else
    local live = require('riptrace.hosts').items(hosts)
    if #live == 1 then
      warn('no live agents', { 'start one on each host with `riptrace agent`' })
    else
      ok(('%d live host%s: %s'):format(#live - 1, #live == 2 and '' or 's', table.concat(vim.tbl_map(function(i)
        return i.name or ''
      end, vim.list_slice(live, 1, #live - 1)), ', ')))
    end
  end

  if riptrace.dap then
    ok('nvim-dap: adapter "riptrace" and configuration "RipTrace: attach to fleet" registered')
  else
    info('nvim-dap is not installed (or setup() ran before it loaded): buffers and :RipTraceToggle work without it')
  end
  local f = require('riptrace.lsp').features
  info(f.inlay_hints and 'values: inlay hints' or 'values: virtual text at the end of the line (this Neovim has no inlay hints)')
  info(f.codelens_enable and 'lenses: vim.lsp.codelens.enable' or 'lenses: vim.lsp.codelens.refresh on events and on the server\'s requests')
end

return M
