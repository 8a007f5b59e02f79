-- timers: N goroutines each sleep a random duration up to 100 ms; process
-- CPU time (os.clock: user+sys) from the first spawn until all woke.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 10000 or 100000

math.randomseed(1)
local function sleeper(d)
  csp.sleep(d)
end

local c0 = os.clock()
csp.run(function()
  for _ = 1, N do
    csp.go(sleeper, math.random() * 0.1)
  end
end)
local dc = os.clock() - c0
print(string.format("RESULT timers %.1f ms CPU", dc * 1e3))
