-- csp: Go's concurrency model for Lua 5.4. The C core (csp.core) holds the scheduler, channels,
-- select and timers; this file re-exports it and adds the parts that are clearer in Lua.
local core = require "csp.core"
local check = require "csp.check"

local csp = {}
for k, v in pairs(core) do
  if k ~= "chan_methods" then csp[k] = v end  -- core._go_internal stays, for csp's own modules
end

local unpack, select, setmetatable = table.unpack, select, setmetatable
-- One argument (`csp.defer(wg.done, wg)`, the common case) gets an array-only table and no
-- unpack: 6,400 -> 4,000 instructions per deferred call, collection included (callgrind).
local defer1_mt = { __close = function(d) d[1](d[2]) end, __name = "csp.defer" }
local defer_mt = { __close = function(d) d[1](unpack(d, 2, d.n)) end, __name = "csp.defer" }

--- A to-be-closed value that calls f(...) when closed: `local _ <close> = csp.defer(f, x)`.
function csp.defer(f, ...)
  if type(f) ~= "function" then check.type(f, "function", 1, "defer") end
  if select("#", ...) == 1 then return setmetatable({ f, ... }, defer1_mt) end
  return setmetatable({ f, n = select("#", ...) + 1, ... }, defer_mt)
end

--- Go's sync.OnceValues: calls f once; every call returns its cached results or re-raises its error.
function csp.oncefunc(f)
  check.type(f, "function", 1, "oncefunc")
  local once, res = csp.once(), nil
  return function()
    once:call(function() res = table.pack(pcall(f)) end)
    if res == nil then error("oncefunc: f did not return (its goroutine exited)", 2) end
    if not res[1] then error(res[2], 0) end
    return unpack(res, 2, res.n)
  end
end

local pool_mt = { __name = "csp.pool" }
pool_mt.__index = pool_mt

-- Race detector (chosen at load; off: no call): as Go's Pool under -race, a put releases the
-- object and the get that returns it acquires it, so what was done to it before put is
-- ordered before what is done after get. Only objects that can carry state count.
local racing = core._race_enabled and core._race_enabled()
local race_rel, race_acq = core._race_release, core._race_acquire
local stateful = { table = true, userdata = true, ["function"] = true, thread = true }

--- Go's sync.Pool: a cache of reusable objects that the garbage collector may empty.
function csp.pool(new)
  check.opt(new, "function", 1, "pool")
  return setmetatable({ new = new, n = 0, items = setmetatable({}, { __mode = "v" }) }, pool_mt)
end

--- A pooled object (never one the collector dropped), else new() (or nil without new).
function pool_mt:get()
  check.object(self, pool_mt, "pool", 1, "get")
  local items = self.items
  for i = self.n, 1, -1 do
    local x = items[i]
    items[i] = nil
    self.n = i - 1
    if x ~= nil then
      if racing and stateful[type(x)] then race_acq(x) end
      return x
    end
  end
  if self.new then return self.new() end
  return nil
end

function pool_mt:put(x)
  check.object(self, pool_mt, "pool", 1, "put")
  if x == nil then return end
  if racing and stateful[type(x)] then race_rel(x) end
  self.n = self.n + 1
  self.items[self.n] = x
end

--- The race detector's API (README "Race detector"); requiring "csp.race" also turns it on.
csp.race = { watch = core._race_watch, acquire = core._race_acquire, release = core._race_release,
  errors = core._race_errors, enabled = core._race_enabled }

for _, name in ipairs { "context", "group", "memo", "exec", "thread" } do
  for k, v in pairs(require("csp." .. name)) do csp[k] = v end
end

csp.io = require "csp.io"
csp.html.links = require("csp.html").links
csp.http = require "csp.http"

-- The C submodules as package.loaded entries too (require "csp.net" gives csp.net): luaL_argerror
-- names a function called through pcall by looking two levels into package.loaded, so a bad
-- argument to pcall(csp.net.dial, ...) says 'csp.net.dial', not '?'.
for _, name in ipairs { "net", "fs", "atomic", "trace" } do
  if type(csp[name]) == "table" and package.loaded["csp." .. name] == nil then
    package.loaded["csp." .. name] = csp[name]
  end
end

return csp
