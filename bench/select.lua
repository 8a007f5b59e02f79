-- select: one consumer selects over 4 unbuffered channels fed by 4
-- producers; ns per select. The case table is built once and reused.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 200000 or 2000000
local per = N // 4
N = per * 4

local function producer(ch)
  for i = 1, per do
    ch:send(i)
  end
end

csp.run(function()
  local a, b, c, d = csp.chan(), csp.chan(), csp.chan(), csp.chan()
  local t0 = csp.now()
  for _, ch in ipairs{a, b, c, d} do
    csp.go(producer, ch)
  end
  local cases = {csp.recv(a), csp.recv(b), csp.recv(c), csp.recv(d)}
  local select = csp.select
  for _ = 1, N do
    select(cases)
  end
  local dt = csp.now() - t0
  print(string.format("RESULT select %.1f ns/op", dt * 1e9 / N))
end)
