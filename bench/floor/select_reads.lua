-- select's floor with its reads: bench/floor/select.lua, but each select first reads its case
-- table as any select over a table must, through the Lua API (floor.c, fl_select_reads: the
-- options probe, then per case lua_rawgeti, lua_touserdata and the size check that is safe on
-- any value), and the parking select too; ns per select.
local floor = require "bench.floor"

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
  local select, park = floor.new().select, floor.new().select_park
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
print(string.format("RESULT select_reads_floor %.1f ns/op", dt * 1e9 / N))
