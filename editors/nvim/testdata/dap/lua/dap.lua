-- A stand-in for nvim-dap in the plugin's tests (nvim-dap is GPL-3.0 and in
-- neither Debian nor npm): the module tables a plugin fills, adapters and
-- configurations, and the ABORT sentinel a configuration function returns
-- to cancel a session. editors/nvim_test.go puts it on package.path.
return {
  adapters = {},
  configurations = {},
  ABORT = setmetatable({}, {
    __tostring = function()
      return 'dap.ABORT'
    end,
  }),
}
