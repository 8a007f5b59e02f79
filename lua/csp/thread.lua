-- csp.parallel: n worker threads draining a jobs xchan, the pattern users need most on top of
-- csp.thread and csp.xchan. CSP_THREADS caps how many threads it starts.
--
-- Exports (installed into `csp` by init.lua): parallel(n, f, jobs [, results]), maxthreads().
local core = require "csp.core"
local check = require "csp.check"

local M = {}

-- How many worker threads helpers start: the CPUs, at most CSP_THREADS when it is set.
function M.maxthreads()
  local n = core.nthreads()
  local cap = math.tointeger(tonumber(os.getenv("CSP_THREADS") or ""))
  if cap and cap >= 1 and cap < n then n = cap end
  return n
end

-- Runs in each worker thread: f comes as bytecode (no upvalues besides _ENV, as csp.thread).
local function worker(code, jobs, results)
  local f = assert(load(code, "=parallel", "b"))
  if results then
    for job in jobs:range() do results:send((f(job))) end
  else
    for job in jobs:range() do f(job) end
  end
end

local function xchan(v) return getmetatable(v) == "csp.xchan" end

--- parallel(n, f, jobs [, results]): n threads (0 or nil: maxthreads(); never more than
--- CSP_THREADS) each receive jobs until jobs is closed and send f(job) on results. Blocks the
--- calling goroutine until every job is done, closes results, and raises the first thread's
--- error. Run it with csp.go when the caller reads results meanwhile.
function M.parallel(n, f, jobs, results)
  check.opt(n, "integer", 1, "parallel")
  check.type(f, "function", 2, "parallel")
  for i = 1, math.huge do
    local name = debug.getupvalue(f, i)
    if name == nil then break end
    check.arg(i == 1 and name == "_ENV", 2, "parallel",
      "function has upvalues (only _ENV can be sent to a thread)")
  end
  check.arg(xchan(jobs), 3, "parallel", "xchan expected, got " .. check.typename(jobs))
  check.arg(results == nil or xchan(results), 4, "parallel",
    "xchan expected, got " .. check.typename(results))
  local max = M.maxthreads()
  if n == nil or n <= 0 or n > max then n = max end
  local code, workers = string.dump(f), {}
  for i = 1, n do workers[i] = core.thread(worker, code, jobs, results) end
  local err
  for i = 1, n do
    local ok, e = pcall(workers[i].join, workers[i])
    if not ok and err == nil then err = e end
  end
  if results then pcall(results.close, results) end
  if err ~= nil then error(err, 0) end
end

return M
