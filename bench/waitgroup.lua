-- waitgroup: wg:add(1) before each csp.go, wg:done() as the goroutine ends, one wg:wait() for
-- N goroutines. ns per goroutine (add + start + run + done + exit).
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

csp.run(function()
  local wg = csp.waitgroup()
  local function worker()
    wg:done()
  end
  local t0 = csp.now()
  for _ = 1, N do
    wg:add(1)
    csp.go(worker)
  end
  wg:wait()
  local dt = csp.now() - t0
  print(string.format("RESULT waitgroup %.1f ns/op", dt * 1e9 / N))
end)
