-- xpingpong: unbuffered round trips between main and a goroutine in another thread (two
-- xchans); ns per round trip. Go twin: bench/go/pingpong with GOMAXPROCS=2.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 20000 or 200000

local ping, pong = csp.xchan(), csp.xchan()
local t = csp.thread(function(pi, po, n)  -- its own copies of the two xchans
  for _ = 1, n do po:send(pi:recv()) end
end, ping, pong, N)
local t0 = csp.now()
for i = 1, N do
  ping:send(i)
  pong:recv()
end
local dt = csp.now() - t0
t:join()
print(string.format("RESULT xpingpong %.1f ns/op", dt * 1e9 / N))
