-- buffered's floor: bench/buffered.lua's producer and consumer loops with csp taken out (a send
-- and a receive that return at once; the switch every 128 items left out too); ns per item.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 500000 or 5000000

local ch = floor.new()
local t0 = floor.now()
for i = 1, N do
  ch:send(i)
end
local count = 0
for _ = 1, N do
  local _, ok = ch:recv()
  if not ok then break end
  count = count + 1
end
local dt = floor.now() - t0
assert(count == N)
print(string.format("RESULT buffered_floor %.1f ns/op", dt * 1e9 / N))
