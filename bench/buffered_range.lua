-- buffered_range: as buffered.lua, in the fast idioms: the producer calls a
-- cached `local send = ch.send` (no method lookup per item), the consumer
-- uses `for v in ch:range()`; ns per item.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 500000 or 5000000

csp.run(function()
  local ch, done = csp.chan(128), csp.chan()
  csp.go(function()
    local count = 0
    for _ in ch:range() do
      count = count + 1
    end
    done:send(count)
  end)
  local t0 = csp.now()
  local send = ch.send
  for i = 1, N do
    send(ch, i)
  end
  ch:close()
  local got = done:recv()
  local dt = csp.now() - t0
  assert(got == N, ("received %s of %d"):format(got, N))
  print(string.format("RESULT buffered_range %.1f ns/op", dt * 1e9 / N))
end)
