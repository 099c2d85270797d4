-- The commands of the RipTrace plugin; require('riptrace').setup() starts
-- the rest. See :help riptrace.
if vim.g.loaded_riptrace then
  return
end
vim.g.loaded_riptrace = true
if not vim.api.nvim_create_user_command then
  vim.notify('riptrace: this plugin needs Neovim 0.7 or later', vim.log.levels.WARN)
  return
end

local function command(name, fn, desc)
  vim.api.nvim_create_user_command(name, function()
    fn()
  end, { desc = desc })
end

command('RipTraceToggle', function()
  require('riptrace').toggle()
end, 'Trace the line under the cursor on the fleet, or stop tracing it')
command('RipTraceHits', function()
  require('riptrace').hits()
end, 'Show the recent hits of the line under the cursor')
command('RipTraceHosts', function()
  require('riptrace').pick_hosts()
end, 'Pick the hosts whose hits show and where lines are traced')
