-- Seed 2.3.3, sync.Pool: keep temporary objects for reuse instead of allocating new ones.
-- 1000 goroutines each format a log line in a buffer (a table of pieces) taken from the pool
-- and put it back after use; the pool calls `new` only when it is empty. The count of `new`
-- calls is the number of buffers in use at the same time:
--   1. the buffer is used between two blocking calls (atomic here): one buffer serves all;
--   2. each goroutine yields while holding its buffer, 8 workers at a time: 8 buffers;
--   3. without a pool: one buffer per line.
-- A pooled object may be dropped by the garbage collector at any time (the pool holds it
-- weakly); collection is stopped while counting, so the counts are exact, and the end shows
-- the collector emptying the pool.
-- Usage: lua5.4 examples/pool.lua
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
require("flags").new("pool.lua", "sync.Pool reusing buffers"):parse(arg)

local N, WORKERS = 1000, 8
local news = 0
local bufpool = csp.pool(function()
  news = news + 1
  return {}
end)

local function format(buf, i)
  buf[#buf + 1] = "request "
  buf[#buf + 1] = tostring(i)
  buf[#buf + 1] = " done"
  local s = table.concat(buf)
  for k = #buf, 1, -1 do buf[k] = nil end  -- reset before putting it back
  return s
end

local function log_line(i, yield)
  local buf = bufpool:get()
  if yield then csp.gosched() end  -- other goroutines run while this one holds buf
  local s = format(buf, i)
  bufpool:put(buf)
  return s
end

collectgarbage("stop")

local lines = 0
local wg = csp.waitgroup()
for i = 1, N do
  wg:go(function()
    if log_line(i, false) then lines = lines + 1 end
  end)
end
wg:wait()
print(("1. %d lines, buffer used without yielding: new called %d time(s)"):format(lines, news))

news, lines = 0, 0
bufpool = csp.pool(bufpool.new)
local jobs = csp.chan()
for _ = 1, WORKERS do
  wg:go(function()
    for i in jobs:range() do
      if log_line(i, true) then lines = lines + 1 end
    end
  end)
end
for i = 1, N do jobs:send(i) end
jobs:close()
wg:wait()
print(("2. %d lines, %d workers yielding while holding a buffer: new called %d time(s)")
  :format(lines, WORKERS, news))

local allocs = 0
for i = 1, N do
  allocs = allocs + 1
  format({}, i)
end
print(("3. %d lines without a pool: %d buffers allocated"):format(N, allocs))

news = 0
collectgarbage("restart")
collectgarbage()  -- the pool holds its buffers weakly: a collection empties it
bufpool:put(bufpool:get())
print(("after a garbage collection: the next get called new %d time(s)"):format(news))
