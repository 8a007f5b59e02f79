-- csp: Go's concurrency model for Lua 5.4. The C core (csp.core) holds the scheduler, channels,
-- select and timers; this file re-exports it and adds the parts that are clearer in Lua.
local core = require "csp.core"

local csp = {}
for k, v in pairs(core) do
  if k ~= "chan_methods" then csp[k] = v end  -- core._go_internal stays, for csp's own modules
end

local unpack = table.unpack
local defer_mt = {
  __close = function(d) d.f(unpack(d, 1, d.n)) end,
  __name = "csp.defer",
}

--- A to-be-closed value that calls f(...) when closed: `local _ <close> = csp.defer(f, x)`.
function csp.defer(f, ...)
  if type(f) ~= "function" and not (getmetatable(f) or {}).__call then
    error(("bad argument #1 to 'defer' (function expected, got %s)"):format(type(f)), 2)
  end
  return setmetatable({ f = f, n = select("#", ...), ... }, defer_mt)
end

--- Go's sync.OnceValues: calls f once; every call returns its cached results or re-raises its error.
function csp.oncefunc(f)
  if type(f) ~= "function" then
    error(("bad argument #1 to 'oncefunc' (function expected, got %s)"):format(type(f)), 2)
  end
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

--- Go's sync.Pool: a cache of reusable objects that the garbage collector may empty.
function csp.pool(new)
  if new ~= nil and type(new) ~= "function" then
    error(("bad argument #1 to 'pool' (function expected, got %s)"):format(type(new)), 2)
  end
  return setmetatable({ new = new, n = 0, items = setmetatable({}, { __mode = "v" }) }, pool_mt)
end

local function checkpool(p, fname)
  if getmetatable(p) ~= pool_mt then
    error(("bad argument #1 to '%s' (pool expected, got %s)"):format(fname, type(p)), 3)
  end
end

--- A pooled object (never one the collector dropped), else new() (or nil without new).
function pool_mt:get()
  checkpool(self, "get")
  local items = self.items
  for i = self.n, 1, -1 do
    local x = items[i]
    items[i] = nil
    self.n = i - 1
    if x ~= nil then return x end
  end
  if self.new then return self.new() end
  return nil
end

function pool_mt:put(x)
  checkpool(self, "put")
  if x == nil then return end
  self.n = self.n + 1
  self.items[self.n] = x
end

for _, name in ipairs { "context", "group", "memo" } do
  for k, v in pairs(require("csp." .. name)(csp)) do csp[k] = v end
end

csp.html.links = require("csp.html")(csp)
csp.http = require("csp.http")(csp)

return csp
