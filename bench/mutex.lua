-- mutex: uncontended lock + unlock in one goroutine (method calls); ns per pair.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 1000000 or 10000000

csp.run(function()
  local mu, count = csp.mutex(), 0
  local t0 = csp.now()
  for _ = 1, N do
    mu:lock()
    count = count + 1
    mu:unlock()
  end
  local dt = csp.now() - t0
  assert(count == N)
  print(string.format("RESULT mutex %.1f ns/op", dt * 1e9 / N))
end)
