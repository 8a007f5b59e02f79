-- mutex_cached's floor: bench/mutex_cached.lua's loop with csp taken out (cached lock and unlock
-- that return at once); ns per pair.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 1000000 or 10000000

local mu, count = floor.new(), 0
local lock, unlock = mu.lock, mu.unlock
local t0 = floor.now()
for _ = 1, N do
  lock(mu)
  count = count + 1
  unlock(mu)
end
local dt = floor.now() - t0
assert(count == N)
print(string.format("RESULT mutex_cached_floor %.1f ns/op", dt * 1e9 / N))
