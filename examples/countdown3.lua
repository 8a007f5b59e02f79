-- Seed 1.8.3, countdown3: print the countdown, one select per tick with the abort channel.
-- The ticker is stopped on every way out (csp.tick would keep ticking: a leak, as in Go).
-- Usage: lua5.4 examples/countdown3.lua [count] [interval]   (default 10, 1 s)
local csp = require "csp"

local count = tonumber(arg[1]) or 10
local interval = tonumber(arg[2]) or 1

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
