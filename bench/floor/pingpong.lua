-- pingpong's floor: bench/pingpong.lua's loops with csp taken out. Each round trip keeps its two
-- coroutine switches (a yield from a C method, a lua_resume from C) and its four method calls,
-- which do nothing; ns per round trip.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

local ping, pong = floor.new(), floor.new()
local a = coroutine.create(function()
  for i = 1, N do
    ping:send(i)
    pong:wait()
  end
end)
local b = coroutine.create(function()
  for _ = 1, N do
    local v = ping:wait()
    pong:send(v)
  end
end)
local t0 = floor.now()
floor.run(a, b)
local dt = floor.now() - t0
print(string.format("RESULT pingpong_floor %.1f ns/op", dt * 1e9 / N))
