-- mutex_handoff: two goroutines take turns on one mutex; each yields while holding it, so the
-- other is always waiting in lock when it is released: every unlock hands the mutex over to a
-- parked goroutine. ns per lock + unlock (2N of them).
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

csp.run(function()
  local mu, wg, count = csp.mutex(), csp.waitgroup(), 0
  local function worker()
    for _ = 1, N do
      mu:lock()
      count = count + 1
      csp.gosched()
      mu:unlock()
    end
  end
  local t0 = csp.now()
  wg:go(worker)
  wg:go(worker)
  wg:wait()
  local dt = csp.now() - t0
  assert(count == 2 * N)
  print(string.format("RESULT mutex_handoff %.1f ns/op", dt * 1e9 / (2 * N)))
end)
