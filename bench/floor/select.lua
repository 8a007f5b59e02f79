-- select's floor: bench/select.lua with csp taken out, keeping what its run does per value: a
-- call of the cached `select` (a C function that returns at once, or yields every 5th call, as
-- the consumer parks once it has taken the 4 parked producers' values), a `ch:send` method call
-- by a producer and a coroutine switch (each producer parks in its send, as there); ns per select.
-- Given "reads" (select_reads.lua), each select first reads its case table (floor.c).
local floor = require "bench.floor"
local reads = ... == "reads"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 200000 or 2000000
local cycles = N // 5
N = cycles * 5

local chans = {floor.new(), floor.new(), floor.new(), floor.new()}
local cases = {chans[1], chans[2], chans[3], chans[4]}
local function producer(ch, extra)
  for i = 1, cycles do
    if extra then ch:send(i) end  -- the first producer also completes the parked select
    ch:wait()
  end
end
local consumer = coroutine.create(function()
  local o = floor.new()
  local select, park = o.recv, o.wait
  if reads then select, park = o.select, o.select_park end
  for _ = 1, cycles do
    select(cases)
    select(cases)
    select(cases)
    select(cases)
    park(cases)
  end
end)
local cos = {consumer}
for k = 1, 4 do
  cos[k + 1] = coroutine.create(function() producer(chans[k], k == 1) end)
end
local t0 = floor.now()
floor.run(table.unpack(cos))
local dt = floor.now() - t0
print(string.format("RESULT %s %.1f ns/op", reads and "select_reads_floor" or "select_floor",
                    dt * 1e9 / N))
