-- The live hosts of the fleet, from `riptrace hosts --json`, and a
-- vim.ui.select picker over them.
local M = {}

-- command returns the argv and environment of `riptrace hosts --json` with
-- the connection of the configuration. Secrets go through the environment,
-- not the command line other users can read.
function M.command(cfg)
  local a = cfg.attach
  local argv = { cfg.path, 'hosts', '--json' }
  local function flag(name, v)
    if v ~= nil and v ~= '' then
      table.insert(argv, '--' .. name)
      table.insert(argv, v)
    end
  end
  flag('nats', a.nats)
  flag('prefix', a.prefix)
  flag('creds', a.creds)
  flag('inbox-prefix', a.inboxPrefix)
  flag('nkey', a.nkey)
  flag('user', a.user)
  if a.tls then
    flag('tls-ca', a.tls.ca)
    flag('tls-cert', a.tls.cert)
    flag('tls-key', a.tls.key)
  end
  local env = nil
  if a.password or a.token then
    env = { RIPTRACE_PASSWORD = a.password, RIPTRACE_TOKEN = a.token }
  end
  return argv, env
end

-- list runs `riptrace hosts --json` and calls cb(hosts) with the decoded
-- array, or cb(nil, message).
function M.list(cfg, cb)
  local argv, env = M.command(cfg)
  local out, errout = {}, {}
  local ok, job = pcall(vim.fn.jobstart, argv, {
    env = env,
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = function(_, data)
      out = data
    end,
    on_stderr = function(_, data)
      errout = data
    end,
    on_exit = function(_, code)
      if code ~= 0 then
        local msg = vim.trim(table.concat(errout, '\n'))
        cb(nil, ('`%s` failed (exit %d): %s'):format(table.concat(argv, ' ', 1, 3), code, msg))
        return
      end
      local okj, hosts = pcall(vim.fn.json_decode, table.concat(out, '\n'))
      if not okj or type(hosts) ~= 'table' then
        cb(nil, ('reading the output of `%s`: %s'):format(table.concat(argv, ' ', 1, 3), tostring(hosts)))
        return
      end
      cb(hosts)
    end,
  })
  if not ok or job <= 0 then
    cb(nil, ('cannot run %s: install riptrace or set path in require("riptrace").setup()'):format(cfg.path))
  end
end

-- items turns the hosts into picker entries: the live ones by name, each
-- with its Go processes, then one entry for every host.
function M.items(hosts)
  local items = {}
  for _, h in ipairs(hosts) do
    if not h.gone and type(h.name) == 'string' then
      local procs = {}
      local profile = type(h.profile) == 'table' and h.profile or {}
      for _, p in ipairs(type(profile.processes) == 'table' and profile.processes or {}) do
        table.insert(procs, ('%s[%d]'):format(vim.fn.fnamemodify(p.exe or '?', ':t'), p.pid or 0))
      end
      local n = #procs
      table.insert(items, {
        name = h.name,
        label = ('%s  %d Go process%s%s'):format(h.name, n, n == 1 and '' or 'es', n > 0 and (': ' .. table.concat(procs, ', ')) or ''),
      })
    end
  end
  table.sort(items, function(a, b)
    return a.name < b.name
  end)
  table.insert(items, { all = true, label = 'all hosts' })
  return items
end

-- pick lets the user choose among the live hosts and calls cb with the host
-- globs ({} for every host), or with nil if there is nothing to pick from or
-- the user cancelled.
function M.pick(cfg, cb)
  M.list(cfg, function(hosts, err)
    if not hosts then
      vim.notify('riptrace: ' .. err, vim.log.levels.ERROR)
      cb(nil)
      return
    end
    local items = M.items(hosts)
    if #items == 1 then
      vim.notify(('riptrace: no live agents on %s: start one with `riptrace agent`'):format(cfg.attach.nats or 'the default NATS server'), vim.log.levels.WARN)
      cb(nil)
      return
    end
    vim.ui.select(items, {
      prompt = 'RipTrace hosts',
      kind = 'riptrace.hosts',
      format_item = function(item)
        return item.label
      end,
    }, function(choice)
      if choice == nil then
        cb(nil)
      elseif choice.all then
        cb({})
      else
        cb({ choice.name })
      end
    end)
  end)
end

return M
