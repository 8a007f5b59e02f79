-- mutex_cached: mutex.lua with the methods cached in locals (`local lock = mu.lock`), the
-- fast idiom for hot loops; ns per lock + unlock pair.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 1000000 or 10000000

csp.run(function()
  local mu, count = csp.mutex(), 0
  local lock, unlock = mu.lock, mu.unlock
  local t0 = csp.now()
  for _ = 1, N do
    lock(mu)
    count = count + 1
    unlock(mu)
  end
  local dt = csp.now() - t0
  assert(count == N)
  print(string.format("RESULT mutex_cached %.1f ns/op", dt * 1e9 / N))
end)
