-- Small helpers shared by the core specs.
local M = {}

-- Calls f(...) and returns its error as a string; fails if f did not raise.
function M.raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

-- Runs f(...) as a goroutine and blocks the main thread until it returns. An error in f is a
-- goroutine panic, so it surfaces here as the main thread's error and fails the test.
function M.in_go(f, ...)
  local csp = require "csp"
  local done = csp.chan()
  local args = table.pack(...)
  csp.go(function()
    f(table.unpack(args, 1, args.n))
    done:close()
  end)
  done:recv()
end

-- Packs the results of a call with their count, nils included.
function M.pack(...)
  return table.pack(...)
end

-- Shared objects (xchan, syncmap, atomics, threads) alive in the process, after two full
-- collections in this state.
function M.shared_alive()
  collectgarbage()
  collectgarbage()
  return require("csp").stats().shared_alive
end

-- Ended threads drop their refs just after their joiners wake: waits (bounded) until the count
-- is back to base, and returns it.
function M.shared_settles(base)
  local csp = require "csp"
  for _ = 1, 2000 do
    if M.shared_alive() <= base then break end
    csp.sleep(0.001)
  end
  return M.shared_alive()
end

-- Under `make asan` (libasan preloaded) freed memory sits in ASan's quarantine: RSS says nothing.
M.ASAN = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil

-- This process's resident set, KiB.
function M.rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local st = f:read("a")
  f:close()
  return tonumber(st:match("VmRSS:%s*(%d+)"))
end

return M
