-- Seed 1.8.1, countdown1: a rocket launch countdown paced by csp.tick.
-- Usage: lua5.4 examples/countdown1.lua [count] [interval]   (default 10, 1 s)
local csp = require "csp"

local count = tonumber(arg[1]) or 10
local interval = tonumber(arg[2]) or 1

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
