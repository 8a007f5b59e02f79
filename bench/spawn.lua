-- spawn: start N goroutines at once; each counts itself and the last one
-- closes `done`. ns per goroutine for create + run + exit.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

csp.run(function()
  local done, count = csp.chan(), 0
  -- Goroutines run one at a time and switch only in blocking calls, so the
  -- plain counter is race-free (Go needs atomic.AddInt64 here).
  local function worker()
    count = count + 1
    if count == N then done:close() end
  end
  local t0 = csp.now()
  for _ = 1, N do
    csp.go(worker)
  end
  done:recv()
  local dt = csp.now() - t0
  print(string.format("RESULT spawn %.1f ns/op", dt * 1e9 / N))
end)
