-- mutex's floor: bench/mutex.lua's loop with csp taken out (lock and unlock return at once);
-- ns per pair.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 1000000 or 10000000

local mu, count = floor.new(), 0
local t0 = floor.now()
for _ = 1, N do
  mu:lock()
  count = count + 1
  mu:unlock()
end
local dt = floor.now() - t0
assert(count == N)
print(string.format("RESULT mutex_floor %.1f ns/op", dt * 1e9 / N))
