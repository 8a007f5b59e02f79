-- Seed 2.6.1, memo1: the concurrency-unsafe memo, a plain table from key to result.
-- What goes wrong here is not what goes wrong in Go. In Go concurrent map writes corrupt the
-- map (or crash the program: "concurrent map writes"). csp schedules cooperatively: goroutines
-- switch only inside blocking calls, so the lookup and the store are each atomic and the table
-- itself is never corrupted; but the slow function blocks between the lookup and the store, so every caller
-- of a key that arrives meanwhile also misses and calls it again: duplicate calls (20 for 10
-- keys), and the later result overwrites the earlier one. Under the race detector
-- (CSP_RACE=1 lua5.4 examples/memo1.lua) the unsynchronised reads and writes of the cache are
-- reported, as `go test -race` reports them in Go, and the exit status is 66.
-- Usage: lua5.4 examples/memo1.lua [-http] [-delay SECONDS]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local memotest = require "memotest"
local opts = memotest.args("memo1.lua", "the concurrency-unsafe memo: duplicate calls")

local Memo = {}
Memo.__index = Memo

local function New(f)
  -- watched: under CSP_RACE=1 the detector reports the race on it, as go test -race does
  return setmetatable({ f = f, cache = csp.race.watch({}, "memo1 cache") }, Memo)
end

-- NOTE: not concurrency-safe!
function Memo:get(key)
  local res = self.cache[key]
  if res == nil then
    local value, err = self.f(key)  -- blocks: other goroutines look up the same key meanwhile
    res = { value = value, err = err }
    self.cache[key] = res
  end
  return res.value, res.err
end

local calls = memotest.run("memo1: no lock (not concurrency-safe)", New, opts)
print(("under cooperative scheduling the table is not corrupted (Lua code between blocking "
  .. "calls is atomic), but %d of "
  .. "%d calls were duplicates: every get that arrived while its key was being computed "
  .. "called f again"):format(calls - 10, calls))
