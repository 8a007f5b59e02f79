-- the mutex hand-off's floor: bench/mutex_handoff.lua with csp taken out. Two coroutines on the
-- run queue (floor.c) take turns on a bare mutex that unlock hands to its one waiter, each
-- yielding to the tail (floor.gosched) while holding it; ns per lock + unlock (2N of them).
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

local mu, count = floor.mutex(), 0
local function worker()
  for _ = 1, N do
    mu:lock()
    count = count + 1
    floor.gosched()
    mu:unlock()
  end
end
local t0 = floor.now()
floor.sched(coroutine.create(function()
  floor.go(worker)
  floor.go(worker)
end), true)
local dt = floor.now() - t0
assert(count == 2 * N)
print(string.format("RESULT mutex_handoff_floor %.1f ns/op", dt * 1e9 / (2 * N)))
