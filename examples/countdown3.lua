-- Seed 1.8.3, countdown3: print the countdown, one select per tick with the abort channel.
-- The ticker is stopped on every way out (csp.tick would keep ticking: a leak, as in Go).
-- Usage: lua5.4 examples/countdown3.lua [count] [interval]   (default 10, 1 s)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("countdown3.lua [COUNT] [INTERVAL]",
  "a countdown that return (or the end of input) aborts")
f:arg("count", "int", 10, "ticks to count down", { min = 0 })
f:arg("interval", "number", 1, "seconds per tick", { positive = true })
local opts = f:parse(arg)
local count, interval = opts.count, opts.interval

local function launch()
  print("Lift off!")
end

local abort = csp.chan()
csp.go(function()
  csp.stdin:read(1)  -- read a single byte; the end of input (</dev/null, Ctrl-D) counts too, as in Go
  abort:send(true)
end)

local function countdown()
  print("Commencing countdown.  Press return to abort.")
  local ticker = csp.ticker(interval)
  local _ <close> = csp.defer(ticker.stop, ticker)
  for n = count, 1, -1 do
    print(n)
    local i = csp.select{ csp.recv(ticker.c), csp.recv(abort) }
    if i == 2 then
      print("Launch aborted!")
      return
    end
  end
  launch()
end

countdown()
