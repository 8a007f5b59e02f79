-- exec latency and what spawning costs the other goroutines, at a small and at a large RSS.
-- Usage: lua5.4 bench/exec.lua [rss_mb] [n]. Prints RESULT lines: mean ms per sequential
-- csp.exec("true"), and the longest gap of a 1 ms ticker while 100 execs run concurrently.
local csp = require "csp"

local rss_mb, n = tonumber(arg[1]) or 0, tonumber(arg[2]) or 200

-- Touched memory: strings filled by rep (each page resident), 64 MB each (rep's limit is 2 GB).
local ballast = {}
for i = 1, rss_mb // 64 do ballast[i] = ("x"):rep(64 * 1024 * 1024 - i) end

local function rss()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) // 1024 end
  end
end

local t0 = csp.now()
for _ = 1, n do assert(csp.exec("true")) end
local seq = (csp.now() - t0) / n * 1e3

-- A ticker goroutine records its longest gap while 100 execs start at once.
local stop, maxgap = false, 0
local tdone = csp.chan()
csp.go(function()
  local last = csp.now()
  while not stop do
    csp.sleep(0.001)
    local t = csp.now()
    if t - last > maxgap then maxgap = t - last end
    last = t
  end
  tdone:close()
end)
local wg = csp.waitgroup()
t0 = csp.now()
for _ = 1, 100 do
  wg:add(1)
  csp.go(function() assert(csp.exec("true")) wg:done() end)
end
wg:wait()
local conc = (csp.now() - t0) * 1e3
stop = true
tdone:recv()

print(("RESULT exec_seq_rss%d %.3f ms/exec (VmRSS %d MB)"):format(rss_mb, seq, rss()))
print(("RESULT exec_100_rss%d %.1f ms wall, ticker max gap %.1f ms"):format(rss_mb, conc, maxgap * 1e3))
assert(#ballast == rss_mb // 64)
