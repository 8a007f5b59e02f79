-- csp.group: Go's errgroup (golang.org/x/sync/errgroup) on the core's goroutines.
--
-- Exports (install into `csp` under the same name): group([ctx]) -> g, gctx
-- Group methods: g:go(f, ...), g:try_go(f, ...) -> bool, g:limit(n), g:wait() -> first error.
--
-- A plain module over csp.core and csp.context; init.lua copies its exports into `csp`.
--
-- A goroutine fails when f raises (the error value) or returns `nil, err` with err ~= nil.
-- The first failure is kept and cancels gctx; wait() waits for every goroutine, then cancels
-- gctx (as errgroup does) and returns that failure, or nil.
local core = require "csp.core"
local context = require "csp.context"
local check = require "csp.check"

local chan, go = core.chan, core.go
local newwg = core.waitgroup
local Context = getmetatable(context.background())

local Group = { __name = "csp.group" }
Group.__index = Group

-- Closed when a group goroutine ends by any path (return, error caught below, goexit).
local Token = {
  __close = function(tok)
    local g = tok.g
    g._n = g._n - 1
    if g._sem then g._sem:try_recv() end -- always succeeds: this goroutine holds a slot
    g._wg:done()
  end,
}

local object, checktype = check.object, check.type

local function run(g, f, ...)
  local _ <close> = g._tok
  local ok, a, b = pcall(f, ...)
  local failed, err
  if not ok then
    -- error() or error(nil) still fails (Go turns panic(nil) into a PanicNilError): wait()
    -- returns lua.c's words for it rather than a nil that reads as success.
    failed, err = true, a
    if err == nil then err = "(error object is a nil value)" end
  elseif a == nil and b ~= nil then
    failed, err = true, b
  end
  if failed and not g._failed then
    g._failed, g._err = true, err
    g._cancel()
  end
end

local function start(g, f, ...)
  g._n = g._n + 1
  g._wg:add(1)
  go(run, g, f, ...)
end

function Group:go(f, ...)
  object(self, Group, "group", 1, "go")
  checktype(f, "function", 1, "go")
  local sem = self._sem
  if sem then sem:send(true) end
  start(self, f, ...)
end

function Group:try_go(f, ...)
  object(self, Group, "group", 1, "try_go")
  checktype(f, "function", 1, "try_go")
  local sem = self._sem
  if sem and not sem:try_send(true) then return false end
  start(self, f, ...)
  return true
end

-- At most n goroutines run at once; n < 0 removes the limit; n == 0 blocks every go (Go).
function Group:limit(n)
  object(self, Group, "group", 1, "limit")
  if type(n) == "number" then n = math.tointeger(n) or n end  -- 2.0, as luaL_checkinteger takes it
  checktype(n, "integer", 1, "limit")
  check.arg(n <= 0x7fffffff, 1, "limit", "makechan: size out of range")  -- Go panics the same
  if self._n ~= 0 then
    error(("errgroup: modify limit while %d goroutines in the group are still active"):format(
      self._n), 2)
  end
  self._sem = n >= 0 and chan(n) or nil
end

function Group:wait()
  object(self, Group, "group", 1, "wait")
  self._wg:wait()
  self._cancel()
  return self._err
end

local M = {}

function M.group(ctx)
  if ctx == nil then ctx = context.background() end
  object(ctx, Context, "context", 1, "group")
  local gctx, cancel = context.with_cancel(ctx)
  local g = setmetatable({ _wg = newwg(), _cancel = cancel, _n = 0, _failed = false }, Group)
  g._tok = setmetatable({ g = g }, Token)
  return g, gctx
end

return M
