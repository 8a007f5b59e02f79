-- csp.group: Go's errgroup (golang.org/x/sync/errgroup) on the core's goroutines.
--
-- Exports (install into `csp` under the same name): group([ctx]) -> g, gctx
-- Group methods: g:go(f, ...), g:try_go(f, ...) -> bool, g:limit(n), g:wait() -> first error.
--
-- Usage from init.lua, after csp.background and csp.with_cancel are installed (they are looked
-- up on each call, so load order only matters by then): `require("csp.group")(csp)`.
--
-- A goroutine fails when f raises (the error value) or returns `nil, err` with err ~= nil.
-- The first failure is kept and cancels gctx; wait() waits for every goroutine, then cancels
-- gctx (as errgroup does) and returns that failure, or nil.
return function(core)
  local chan, go = core.chan, core.go

  local newwg = core.waitgroup

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

  local function checkgroup(g, fname)
    if getmetatable(g) ~= Group then
      error(("bad argument #1 to '%s' (group expected, got %s)"):format(fname, type(g)), 3)
    end
  end

  local function checkfunc(f, fname)
    if type(f) ~= "function" and not (getmetatable(f) or {}).__call then
      error(("bad argument #1 to '%s' (function expected, got %s)"):format(fname, type(f)), 3)
    end
  end

  local function run(g, f, ...)
    local _ <close> = g._tok
    local ok, a, b = pcall(f, ...)
    local failed, err
    if not ok then
      failed, err = true, a
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
    checkgroup(self, "go")
    checkfunc(f, "go")
    local sem = self._sem
    if sem then sem:send(true) end
    start(self, f, ...)
  end

  function Group:try_go(f, ...)
    checkgroup(self, "try_go")
    checkfunc(f, "try_go")
    local sem = self._sem
    if sem and not sem:try_send(true) then return false end
    start(self, f, ...)
    return true
  end

  -- At most n goroutines run at once; n < 0 removes the limit; n == 0 blocks every go (Go).
  function Group:limit(n)
    checkgroup(self, "limit")
    if math.type(n) ~= "integer" then
      error(("bad argument #1 to 'limit' (integer expected, got %s)"):format(
        math.type(n) or type(n)), 2)
    end
    if self._n ~= 0 then
      error(("errgroup: modify limit while %d goroutines in the group are still active"):format(
        self._n), 2)
    end
    self._sem = n >= 0 and chan(n) or nil
  end

  function Group:wait()
    checkgroup(self, "wait")
    self._wg:wait()
    self._cancel()
    return self._err
  end

  local M = {}

  function M.group(ctx)
    local bg = core.background()
    if ctx == nil then
      ctx = bg
    elseif getmetatable(ctx) ~= getmetatable(bg) then
      error(("bad argument #1 to 'group' (context expected, got %s)"):format(type(ctx)), 2)
    end
    local gctx, cancel = core.with_cancel(ctx)
    local g = setmetatable({ _wg = newwg(), _cancel = cancel, _n = 0, _failed = false }, Group)
    g._tok = setmetatable({ g = g }, Token)
    return g, gctx
  end

  return M
end
