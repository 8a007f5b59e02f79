-- xfarm: a CPU-bound job farm, JOBS jobs of ~20 us of Lua each, run by csp.parallel on
-- CSP_THREADS threads (1 or 2); jobs per second. The speed-up is the 2-thread rate over the
-- 1-thread rate of the same program. Also prints the process's CPU time (os.clock: every
-- thread), since on a shared machine the wall ratio follows the CPUs the OS gives, not the code.
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local JOBS = (q and q ~= "" and q ~= "0") and 20000 or 200000
local WORK = tonumber(os.getenv("XFARM_WORK") or "") or 1200  -- loop steps: ~20 us here

local function job(n)
  local s = 0
  for i = 1, n do s = s + i % 7 end
  return s
end

local jobs, results = csp.xchan(1024), csp.xchan(1024)
csp.go(function()
  for _ = 1, JOBS do jobs:send(WORK) end
  jobs:close()
end)
local t0, c0 = csp.now(), os.clock()
csp.go(csp.parallel, 0, job, jobs, results)
local n = 0
for _ in results:range() do n = n + 1 end
local dt, cpu = csp.now() - t0, os.clock() - c0
assert(n == JOBS)
print(string.format("RESULT xfarm %.0f jobs/s (%d threads, %.1f us/job/thread, CPU %.2f us/job)",
  JOBS / dt, csp.maxthreads(), dt * 1e6 / JOBS * csp.maxthreads(), cpu * 1e6 / JOBS))
