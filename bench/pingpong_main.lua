-- pingpong_main: pingpong with main (the script's top level, not a goroutine) as one side:
-- each of main's blocking calls runs the scheduler loop until it is readied. ns per round trip.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

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
print(string.format("RESULT pingpong_main %.1f ns/op", dt * 1e9 / N))
