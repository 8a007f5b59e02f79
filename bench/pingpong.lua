-- pingpong: unbuffered round trips between two goroutines; ns per round trip.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

csp.run(function()
  local ping, pong = csp.chan(), csp.chan()
  csp.go(function()
    for _ = 1, N do
      local v = ping:recv()
      pong:send(v)
    end
  end)
  local t0 = csp.now()
  for i = 1, N do
    ping:send(i)
    pong:recv()
  end
  local dt = csp.now() - t0
  print(string.format("RESULT pingpong %.1f ns/op", dt * 1e9 / N))
end)
