-- parked: resident memory (VmRSS delta) per goroutine blocked on a channel
-- receive; bytes per goroutine.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 10000 or 100000

local function rss()
  local f = assert(io.open("/proc/self/status"))
  for line in f:lines() do
    local kb = line:match("^VmRSS:%s*(%d+)")
    if kb then
      f:close()
      return tonumber(kb) * 1024
    end
  end
  error("no VmRSS in /proc/self/status")
end

csp.run(function()
  local ch, started = csp.chan(), 0
  local function parked()
    started = started + 1
    ch:recv()
  end
  collectgarbage()
  collectgarbage()
  local before = rss()
  for _ = 1, N do
    csp.go(parked)
  end
  while started < N do
    csp.gosched()
  end
  collectgarbage()
  collectgarbage()
  local after = rss()
  print(string.format("RESULT parked %.1f bytes", (after - before) / N))
  ch:close()
end)
