-- csp.memo: concurrent non-blocking cache with duplicate suppression (gopl 9.7, memo4:
-- an entry per key whose ready channel is closed once the result is set).
--
-- Exports (install into `csp` under the same name): memo(f) -> m
-- Memo methods: m:get(key) -> what f(key) returned (every value), m:forget(key).
--
-- A plain module over csp.core; init.lua copies its exports into `csp`.
--
-- No mutex is needed: Lua code between two blocking calls is atomic, so the lookup and the
-- insertion of the entry cannot interleave with another get. The first caller of a key runs
-- f(key) itself; callers arriving meanwhile wait on the entry's ready channel (made only when
-- a second caller shows up). A result, `nil, err` included, is kept until forget(key).
-- A raised error is re-raised to the caller and to every waiter of that call, and the entry
-- is dropped so a later get calls f again (Go's singleflight does the same with panics).
--
-- get and forget are closures stored in each memo rather than methods behind __index, and a
-- finished call with one non-nil result also goes into `one` (key -> value): a hit is then one
-- field read, one table lookup and a return, which is what the benchmark against Go's
-- mutex-based memo measures (708 -> 599 instructions a hit with `one`, callgrind). An entry e
-- holds e.n = number of results (nil while the call runs, -1 after a raised error), the results
-- in e[1..n], e.err, e.ready; `one` only ever holds what cache's current entry for the key says.
local core = require "csp.core"
local check = require "csp.check"

local chan = core.chan
local pack, unpack = table.pack, table.unpack
-- Race detector (chosen at load; off: no call): a finished call releases its entry and a get
-- that finds the result acquires it, as the mutex of Go's memo orders f's writes before every
-- later get. Racing, `one` stays empty, so every hit goes through the entry.
local racing = core._race_enabled and core._race_enabled()
local race_rel, race_acq = core._race_release, core._race_acquire

local Memo = { __name = "csp.memo" }

-- Entries are their own to-be-closed guard: if the running call ends without a result
-- (its goroutine exits), the waiters get an error instead of waiting forever.
local Entry = {}
Entry.__close = function(e)
  if not e.n then
    e.n, e.err = -1, "memo: the call of f did not return (its goroutine exited)"
    local cache = e.cache
    if cache[e.key] == e then cache[e.key] = nil end
    if e.ready then e.ready:close() end
  end
end

-- Everything but a hit with one or two results.
local function slow(e, n)
  if n == nil then
    local ready = e.ready
    if not ready then
      ready = chan()
      e.ready = ready
    end
    ready:recv()
    n = e.n
  end
  if n < 0 then error(e.err, 0) end
  if n == 1 then return e[1] end
  if n == 2 then return e[1], e[2] end
  return unpack(e, 1, n)
end

local function call(f, cache, one, key)
  local e = setmetatable({ cache = cache, key = key }, Entry)
  cache[key] = e
  do
    local _ <close> = e
    local r = pack(pcall(f, key))
    if r[1] then
      local n = r.n - 1
      for i = 1, n do e[i] = r[i + 1] end
      e.n = n
      if racing then race_rel(e)
      elseif n == 1 and e[1] ~= nil and cache[key] == e then one[key] = e[1] end
    else
      e.n, e.err = -1, r[2]
      if cache[key] == e then cache[key] = nil end
    end
    if e.ready then e.ready:close() end
  end
  return slow(e, e.n)
end

local M = {}

function M.memo(f)
  check.type(f, "function", 1, "memo")
  local cache, one = {}, {}
  return setmetatable({
    get = function(self, key)
      local v = one[key]
      if v ~= nil then return v end
      local e = cache[key]
      if e then
        local n = e.n
        if racing and n then race_acq(e) end
        if n == 1 then return e[1] end
        if n == 2 then return e[1], e[2] end
        return slow(e, n)
      end
      check.object(self, Memo, "memo", 1, "get")
      check.arg(key ~= nil and key == key, 1, "get", key == nil and "key must not be nil"
        or "key must not be NaN")
      return call(f, cache, one, key)
    end,
    forget = function(self, key)
      check.object(self, Memo, "memo", 1, "forget")
      check.arg(key ~= nil and key == key, 1, "forget", key == nil and "key must not be nil"
        or "key must not be NaN")
      cache[key], one[key] = nil, nil
    end,
  }, Memo)
end

return M
