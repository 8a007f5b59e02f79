-- Seed 1.8.3 as the note writes it first, with time.Tick, the version it shows leaking: when
-- countdown returns, nothing receives from its tick any more, yet the tick goes on (in Go
-- before 1.23, a ticker nobody can stop, for the life of the program). examples/countdown3.lua
-- is the fix the note gives next: a ticker, stopped on every way out. At the end this prints
-- the timers still live: the forgotten tick is one. Like Go 1.23, csp lets the collector take a
-- tick that nothing references: a collection ends it.
-- Usage: lua5.4 examples/countdown3_tick.lua [count] [interval]   (default 10, 1 s)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("countdown3_tick.lua [COUNT] [INTERVAL]",
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
  local tick = csp.tick(interval)
  for n = count, 1, -1 do
    print(n)
    local i = csp.select{ csp.recv(tick), csp.recv(abort) }
    if i == 2 then
      print("Launch aborted!")
      return
    end
  end
  launch()
end

countdown()
io.stderr:write(("timers still live: %d (the forgotten tick)\n"):format(csp.stats().timers))
collectgarbage()
io.stderr:write(("after a collection: %d\n"):format(csp.stats().timers))
