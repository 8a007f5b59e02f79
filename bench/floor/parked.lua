-- parked's floor: resident memory (VmRSS delta) per Lua coroutine parked in a C function that
-- yielded (a blocked receive with csp taken out), each kept in a table; bytes per coroutine.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 10000 or 100000

local rss = floor.rss

local ch, started, cos = floor.new(), 0, {}
local function parked()
  started = started + 1
  ch:wait()
end
collectgarbage()
collectgarbage()
local before = rss()
for i = 1, N do
  local co = coroutine.create(parked)
  cos[i] = co
  assert(coroutine.resume(co))
end
collectgarbage()
collectgarbage()
local after = rss()
assert(started == N and coroutine.status(cos[N]) == "suspended")
print(string.format("RESULT parked_floor %.1f bytes", (after - before) / N))
