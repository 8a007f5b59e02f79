-- xfarm_diag: xfarm's workload (JOBS jobs of 1200 loop steps, main producing and consuming through
-- cap 1024 xchans) on CSP_THREADS (default 2) csp.thread workers, printing each worker's job count
-- and CPU time and main's CPU time (utime + stime of /proc/thread-self/stat): where the CPU goes.
local csp = require "csp"
local q = os.getenv("BENCH_QUICK")
local JOBS = (q and q ~= "" and q ~= "0") and 20000 or 200000
local WORK = 1200
local NT = tonumber(os.getenv("CSP_THREADS") or "2")
local function cpu()
  local f = io.open("/proc/thread-self/stat"); local s = f:read("a"); f:close()
  local fields = {}
  for w in s:gsub("^.*%) ", ""):gmatch("%S+") do fields[#fields + 1] = w end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100, tonumber(fields[12]) / 100
end
local function worker(jobs, results)
  local function tcpu()
    local f = io.open("/proc/thread-self/stat"); local s = f:read("a"); f:close()
    local fields = {}
    for w in s:gsub("^.*%) ", ""):gmatch("%S+") do fields[#fields + 1] = w end
    return (tonumber(fields[12]) + tonumber(fields[13])) / 100
  end
  local function job(n) local s = 0 for i = 1, n do s = s + i % 7 end return s end
  local n = 0
  for j in jobs:range() do results:send(job(j)); n = n + 1 end
  return n, tcpu()
end
local jobs, results = csp.xchan(1024), csp.xchan(1024)
csp.go(function() for _ = 1, JOBS do jobs:send(WORK) end jobs:close() end)
local t0 = csp.now()
local ts = {}
for i = 1, NT do ts[i] = csp.thread(worker, jobs, results) end
csp.go(function() for i = 1, NT do local n, c = ts[i]:join(); ts[i] = {n, c} end results:close() end)
local n = 0
for _ in results:range() do n = n + 1 end
local dt = csp.now() - t0
local mc = cpu()
local s = string.format("threads %d wall %.2f s  %.0f jobs/s  main cpu %.2f", NT, dt, JOBS / dt, mc)
for i = 1, NT do s = s .. string.format("  w%d: %d jobs cpu %.2f", i, ts[i][1], ts[i][2]) end
print(s)
