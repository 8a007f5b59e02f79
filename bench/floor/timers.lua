-- the sleepers' floor: bench/timers.lua with csp taken out. Each goroutine is a coroutine made by
-- floor.go and parked by floor.sleep on a binary heap of deadlines (floor.c); the driver sleeps
-- until the next deadline when nothing runs. Process CPU from the first spawn until all woke.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 10000 or 100000

math.randomseed(1)
local function sleeper(d)
  floor.sleep(d)
end

local c0 = os.clock()
floor.sched(coroutine.create(function()
  for _ = 1, N do
    floor.go(sleeper, math.random() * 0.1)
  end
end), true)
local dc = os.clock() - c0
print(string.format("RESULT timers_floor %.1f ms CPU", dc * 1e3))
