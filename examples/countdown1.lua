-- Seed 1.8.1, countdown1: a rocket launch countdown paced by csp.tick.
-- Usage: lua5.4 examples/countdown1.lua [count] [interval]   (default 10, 1 s)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("countdown1.lua [COUNT] [INTERVAL]", "a countdown paced by csp.tick")
f:arg("count", "int", 10, "ticks to count down", { min = 0 })
f:arg("interval", "number", 1, "seconds per tick", { positive = true })
local opts = f:parse(arg)
local count, interval = opts.count, opts.interval

local function launch()
  print("Lift off!")
end

print("Commencing countdown.")
local tick = csp.tick(interval)
for countdown = count, 1, -1 do
  print(countdown)
  tick:recv()
end
launch()
