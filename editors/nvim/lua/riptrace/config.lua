-- Checks the options of require('riptrace').setup() against the contract
-- and splits them into the attach configuration (nvim-dap) and the
-- language server's settings.
local contract = require('riptrace.contract')

local M = {}

local islist = vim.islist or vim.tbl_islist

-- The type every option may have, by name: the attach attributes, the
-- language server settings, and path (the riptrace binary).
local function option_types()
  local types, enums = { path = 'string' }, {}
  for _, a in ipairs(contract.attributes) do
    types[a.name] = a.type
    enums[a.name] = a.enum
  end
  for _, s in ipairs(contract.settings) do
    types[s.name] = types[s.name] or s.type
    enums[s.name] = enums[s.name] or s.enum
  end
  return types, enums
end

local function has_type(v, want)
  if want == 'string' or want == 'boolean' then
    return type(v) == want
  elseif want == 'integer' then
    return type(v) == 'number' and v == math.floor(v)
  elseif want == 'array' then
    return type(v) == 'table' and islist(v)
  elseif want == 'object' then
    return type(v) == 'table' and (next(v) == nil or not islist(v))
  end
  return false
end

local articles = { string = 'a string', boolean = 'a boolean', integer = 'an integer', array = 'a list', object = 'a table with keys' }

-- parse returns the configuration setup() works with:
--   { path = binary, attach = {attribute = value}, settings = {setting = value} }
-- or nil and a message saying what to change.
function M.parse(opts)
  if opts == nil then
    opts = {}
  end
  if type(opts) ~= 'table' then
    return nil, ('riptrace.setup() takes a table of options, got %s (see :help riptrace-setup)'):format(type(opts))
  end
  local types, enums = option_types()
  local names = vim.tbl_keys(types)
  table.sort(names)
  local cfg = { path = 'riptrace', attach = {}, settings = {} }
  for k, v in pairs(opts) do
    local want = types[k]
    if want == nil then
      return nil, ('riptrace.setup(): unknown option %s; it takes %s (see :help riptrace-setup)'):format(vim.inspect(k), table.concat(names, ', '))
    end
    if want == 'array' and type(v) == 'string' then
      v = { v } -- one glob
    end
    if not has_type(v, want) then
      return nil, ('riptrace.setup(): %s must be %s, got %s'):format(k, articles[want], vim.inspect(v))
    end
    if enums[k] and not vim.tbl_contains(enums[k], v) then
      return nil, ('riptrace.setup(): %s must be one of %s, got %s'):format(k, table.concat(vim.tbl_map(vim.inspect, enums[k]), ', '), vim.inspect(v))
    end
    if k == 'path' then
      cfg.path = v
    end
  end
  for _, a in ipairs(contract.attributes) do
    local v = opts[a.name]
    if type(v) == 'string' and a.type == 'array' then
      v = { v }
    end
    cfg.attach[a.name] = vim.deepcopy(v)
  end
  for _, s in ipairs(contract.settings) do
    local v = opts[s.name]
    if type(v) == 'string' and s.type == 'array' then
      v = { v }
    end
    cfg.settings[s.name] = vim.deepcopy(v)
  end
  -- The debug adapter calls the credentials file creds, the server credentials.
  cfg.settings.credentials = cfg.settings.credentials or cfg.attach.creds
  cfg.attach.creds = cfg.attach.creds or cfg.settings.credentials
  return cfg
end

return M
