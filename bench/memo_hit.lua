-- memo_hit: csp.memo's get on keys already cached (1000 string keys, round robin); ns per get.
-- Go's twin is gopl's memo4 (a mutex and an entry whose ready channel is closed).
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 1000000 or 10000000
local K = 1000

csp.run(function()
  local m = csp.memo(function(key) return #key end)
  local keys = {}
  for i = 1, K do
    keys[i] = "https://example.com/page/" .. i
    m:get(keys[i])
  end
  local sum = 0
  local t0 = csp.now()
  local i = 0
  for _ = 1, N do
    i = i + 1
    if i > K then i = 1 end
    sum = sum + m:get(keys[i])
  end
  local dt = csp.now() - t0
  assert(sum > 0)
  print(string.format("RESULT memo_hit %.1f ns/op", dt * 1e9 / N))
end)
