-- buffered_range's floor: bench/buffered_range.lua's loops with csp taken out: a cached `send`
-- that returns at once, and `for v in ch:range(n)` over an iterator that only counts (the switch
-- every 128 items left out); ns per item.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 500000 or 5000000

local ch = floor.new()
local t0 = floor.now()
local send = ch.send
for i = 1, N do
  send(ch, i)
end
local count = 0
for _ in ch:range(N) do
  count = count + 1
end
local dt = floor.now() - t0
assert(count == N)
print(string.format("RESULT buffered_range_floor %.1f ns/op", dt * 1e9 / N))
