-- Seed 1.8.1, countdown2: launch after a delay unless return is pressed first: select between
-- csp.after and an abort channel fed by a goroutine reading one byte of stdin.
-- Usage: lua5.4 examples/countdown2.lua [seconds]   (default 10)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("countdown2.lua [SECONDS]", "launch unless return is pressed (or input ends) first")
f:arg("seconds", "number", 10, "seconds before the launch", { min = 0 })
local opts = f:parse(arg)
local seconds = opts.seconds

local function launch()
  print("Lift off!")
end

local abort = csp.chan()
csp.go(function()
  csp.stdin:read(1)  -- read a single byte; the end of input (</dev/null, Ctrl-D) counts too, as in Go
  abort:send(true)
end)

print("Commencing countdown.  Press return to abort.")
local aborted = csp.select{
  csp.recv(csp.after(seconds), function() return false end),  -- do nothing
  csp.recv(abort, function() return true end),
}
if aborted then
  print("Launch aborted!")
  return
end
launch()
