-- buffered: producer -> consumer through a cap 128 channel, method calls on
-- every item (ch:send / ch:recv); ns per item.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 500000 or 5000000

csp.run(function()
  local ch, done = csp.chan(128), csp.chan()
  csp.go(function()
    local count = 0
    while true do
      local _, ok = ch:recv()
      if not ok then break end
      count = count + 1
    end
    done:send(count)
  end)
  local t0 = csp.now()
  for i = 1, N do
    ch:send(i)
  end
  ch:close()
  local got = done:recv()
  local dt = csp.now() - t0
  assert(got == N, ("received %s of %d"):format(got, N))
  print(string.format("RESULT buffered %.1f ns/op", dt * 1e9 / N))
end)
