-- csp.check: the argument checks of every lua/csp module, with the C core's luaL messages:
-- `bad argument #n to 'name' (what expected, got type)`, `(field 'k': ...)` for option tables,
-- for a field of an option table.
--
-- Each check is called directly by the public function it guards (the error is raised at its
-- caller). Numbering: a method's arguments count from #1 after self, as `o:f(x)` reads; a bad
-- self is #1 too, as a call written `o.f(x)` reads.
local check = {}

local mtype = math.type

-- What luaL_typeerror prints for v: the metatable's __name (or its protecting __metatable
-- string, which the core's types set to their name), else the type.
local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  if type(mt) == "string" then return mt end
  return type(v)
end
check.typename = typename

-- Level 4: raise, check.x, the public function, its caller.
local function raise(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 4)
end

local function expected(what, v)
  local got = typename(v)
  if got == "number" then got = v ~= v and "nan" or what == "integer" and mtype(v) or got end
  return ("%s expected, got %s"):format(what, got)
end

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Tests for the `what` names the checks accept.
local is = {
  ["function"] = callable,
  string = function(v) return type(v) == "string" end,
  table = function(v) return type(v) == "table" end,
  boolean = function(v) return type(v) == "boolean" end,
  number = function(v) return type(v) == "number" and v == v end,   -- NaN is no number here
  integer = function(v) return mtype(v) == "integer" end,
}

local function test(what, v)
  local t = is[what]
  if t == nil then error("csp.check: unknown type " .. tostring(what), 3) end
  return t(v)
end

--- Raises `bad argument #n to 'fname' (msg)` unless ok.
function check.arg(ok, n, fname, msg)
  if not ok then raise(n, fname, msg) end
end

--- v must be of kind `what` ("function" accepts callables, "number" refuses NaN).
function check.type(v, what, n, fname)
  if not test(what, v) then raise(n, fname, expected(what, v)) end
  return v
end

--- Like check.type, nil allowed.
function check.opt(v, what, n, fname)
  if v ~= nil and not test(what, v) then raise(n, fname, expected(what, v)) end
  return v
end

--- v's metatable must be mt (an object of one of csp's Lua types, called tname in messages).
function check.object(v, mt, tname, n, fname)
  if getmetatable(v) ~= mt then raise(n, fname, expected(tname, v)) end
  return v
end

--- An options table (nil gives an empty one).
function check.opts(v, n, fname)
  if v == nil then return {} end
  if type(v) ~= "table" then raise(n, fname, expected("table", v)) end
  return v
end

--- Field k of option table t, nil or of kind `what`.
function check.field(t, k, what, n, fname)
  local v = t[k]
  if v ~= nil and not test(what, v) then
    raise(n, fname, ("field '%s': %s"):format(k, expected(what, v)))
  end
  return v
end

--- Raises `bad argument #n to 'fname' (field 'k': msg)` unless ok.
function check.fieldarg(ok, k, n, fname, msg)
  if not ok then raise(n, fname, ("field '%s': %s"):format(k, msg)) end
end

return check
