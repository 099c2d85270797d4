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
command('RipTraceSnapshot', function()
  require('riptrace.hits').snapshot()
end, 'Open the latest hit of the line under the cursor as a snapshot (a debug session)')
-- With a bang, the window's location list.
vim.api.nvim_create_user_command('RipTraceHitsList', function(o)
  require('riptrace.hits').quickfix(o.bang)
end, { bang = true, desc = "Put the debug session's recent hits in the quickfix list (the location list with !)" })
command('RipTraceHitsTree', function()
  require('riptrace.hits').tree()
end, "Show the debug session's hits as a tree: breakpoints, processes, hits")
command('RipTraceTimeline', function()
  require('riptrace.hits').timeline()
end, "Show the debug session's hits in the order they ran, across services")
