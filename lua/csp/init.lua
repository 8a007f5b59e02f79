-- csp: Go's concurrency model for Lua 5.4. The C core (csp.core) holds the scheduler, channels,
-- select and timers; this file re-exports it and adds the parts that are clearer in Lua.
local core = require "csp.core"

local csp = {}
for k, v in pairs(core) do
  if k ~= "chan_methods" then csp[k] = v end
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

return csp
