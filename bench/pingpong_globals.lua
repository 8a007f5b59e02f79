-- pingpong_globals: pingpong where both goroutines update a global on every message (ordered
-- by the channels: no race). With CSP_RACE=1 every access is checked and, since each channel
-- operation starts a new epoch, each one records its location: the detector's worst steady case.
local csp = require "csp"
-- luacheck: globals hits

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000

hits = 0

csp.run(function()
  local ping, pong = csp.chan(), csp.chan()
  csp.go(function()
    for _ = 1, N do
      local v = ping:recv()
      hits = hits + 1
      pong:send(v)
    end
  end)
  local t0 = csp.now()
  for i = 1, N do
    ping:send(i)
    pong:recv()
    hits = hits + 1
  end
  local dt = csp.now() - t0
  assert(hits == 2 * N)
  print(string.format("RESULT pingpong_globals %.1f ns/op", dt * 1e9 / N))
end)
