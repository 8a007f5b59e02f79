-- xbuffered: a producer in main streams integers to a consumer in another thread through a
-- cap 1024 xchan; items per second. Go twin: go/xbuffered with GOMAXPROCS=2.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 200000 or 2000000

local ch = csp.xchan(1024)
local t = csp.thread(function(xc)  -- its own copy of the xchan
  local count = 0
  while true do
    local _, ok = xc:recv()
    if not ok then return count end
    count = count + 1
  end
end, ch)
local t0 = csp.now()
for i = 1, N do ch:send(i) end
ch:close()
local got = t:join()
local dt = csp.now() - t0
assert(got == N, ("received %s of %d"):format(got, N))
print(string.format("RESULT xbuffered %.0f items/s", N / dt))
