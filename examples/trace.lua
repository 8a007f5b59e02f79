-- trace: records an execution trace of a small pipeline (a generator, two workers sharing a
-- mutex-protected counter, a collector) for Perfetto or chrome://tracing, and tools/trace2svg.py.
-- Usage: lua5.4 examples/trace.lua [out.json]   (default trace.json; out.pftrace: Perfetto protobuf)
local csp = require "csp"

local path = arg[1] or "trace.json"
assert(csp.trace.start(path))

local jobs, results = csp.chan(), csp.chan(2)
local mu, done = csp.mutex(), 0

local function generator(n)
  for i = 1, n do jobs:send(i) end
  jobs:close()
end

local function worker(wg)
  for x in jobs:range() do
    local t = csp.now()
    while csp.now() - t < 0.0003 do end -- 0.3 ms of work
    if x % 4 == 0 then csp.sleep(0.0005) end -- and some waiting
    mu:lock()
    done = done + 1
    mu:unlock()
    results:send(x * x)
  end
  wg:done()
end

csp.go(generator, 8)
local wg = csp.waitgroup()
wg:add(2)
csp.go(worker, wg)
csp.go(worker, wg)
csp.go(function() wg:wait(); results:close() end)
local sum = 0
for v in results:range() do sum = sum + v end
collectgarbage()
assert(csp.trace.stop())
print(("sum of squares 1..8 = %d (%d jobs); trace in %s"):format(sum, done, path))
