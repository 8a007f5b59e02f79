-- csp.context: Go's context package on channels.
--
-- Exports (install each into `csp` under the same name):
--   background(), with_cancel(parent), with_timeout(parent, d), with_deadline(parent, t),
--   with_value(parent, k, v)
-- Context methods: ctx:done(), ctx:err() -> nil or msg (one value, as API.md and Go's Err:
-- print(ctx:err()) prints Go's words), ctx:deadline() -> t, ok, ctx:value(k).
--
-- A plain module over csp.core; init.lua copies its exports into `csp`.
--
-- One metatable serves every kind of context. Each context caches `_cp`, the nearest
-- cancelable context at or above it (nil under background alone), and `_deadline`, the
-- effective deadline, so done/err/deadline never walk the chain; only value() does.
-- A cancelable context keeps its children in `_kids` until it is cancelled, and a cancelled
-- child removes itself from its parent's set, so long-lived parents do not accumulate them.
-- A deadline is an internal after_func (csrc/afterfunc.c) on the core's timer heap, the one
-- deadline heap in the process: when due it cancels the context in an internal goroutine (not
-- counted by numgoroutine, not dumped, not waited for by csp.run). `_timer` is its id, given
-- back by cancel, which every context with a deadline reaches (the expiry calls it too), so a
-- cancelled context leaves nothing in the heap.
local core = require "csp.core"
local check = require "csp.check"

local chan, now, after_func, after_stop = core.chan, core.now, core._after_func, core._after_stop
-- Race detector (chosen at load; off: no call): cancel releases, err() acquires, as Go's c.mu.
-- The core orders with_deadline's caller before its after_func's goroutine.
local racing = core._race_enabled and core._race_enabled()
local race_rel, race_acq = core._race_release, core._race_acquire

local CANCELED, DEADLINE = "context canceled", "context deadline exceeded"

local Context = { __name = "csp.context" }
Context.__index = Context

-- done() of a context cancelled before anyone asked for its channel, made when first needed
-- (a script that makes no channel sees csp.stats().channels_alive 0).
local closedview

local object, checktype = check.object, check.type

-- Cancels c and its descendants with err. `detach`: remove c from its parent's set (not
-- needed when the parent is being cancelled too: it drops the whole set).
local function cancel(c, err, detach)
  if c._err then return end
  if racing then race_rel(c) end
  c._err = err
  local d = c._done
  if d then d:close() end
  local tm = c._timer
  if tm then
    c._timer = nil
    after_stop(tm)
  end
  local kids = c._kids
  if kids then
    c._kids = nil
    for k in pairs(kids) do cancel(k, err, false) end
  end
  local p = c._pp
  c._pp = nil
  if detach and p and p._kids then p._kids[c] = nil end
end

local function newcancel(parent)
  local cp = parent._cp
  -- The nil fields size the table once instead of growing it as they get set.
  local c = setmetatable({ _parent = parent, _deadline = parent._deadline, _cp = nil, _pp = nil,
    _err = nil, _done = nil, _donev = nil, _kids = nil, _timer = nil }, Context)
  c._cp = c
  if cp then
    if cp._err then
      c._err = cp._err -- a child of a cancelled parent is born cancelled
    else
      local kids = cp._kids
      if not kids then
        kids = {}
        cp._kids = kids
      end
      kids[c] = true
      c._pp = cp
    end
  end
  return c, function() cancel(c, CANCELED, true) end
end

-- The deadline's after_func calls this with its context.
local function expire(c)
  cancel(c, DEADLINE, true)
end

-- Go runs a due timer at its next scheduling point and preempts a loop that never blocks, so
-- a context is done soon after its deadline even in such a loop; csp never preempts Lua code,
-- so done() and err() read the clock: past the deadline, its owner (the nearest cancelable
-- context up from cp with a pending timer) expires now, as its timer would.
local function overdue(cp)
  local t = cp._deadline
  if t and not cp._err and now() >= t then
    local c = cp
    while c and not c._timer do c = c._pp end
    if c then expire(c) end
  end
end

function Context:done()
  object(self, Context, "context", 1, "done")
  local cp = self._cp
  if not cp then return nil end
  overdue(cp)
  local v = cp._donev
  if not v then
    -- Made on first use: contexts only polled with err() never allocate a channel. Callers
    -- get its receive-only view (Go's <-chan struct{}): only cancel may close it.
    if cp._err then
      if not closedview then
        local c = chan()
        c:close()
        closedview = c:receiver()
      end
      v = closedview
    else
      local d = chan()
      cp._done, v = d, d:receiver()
    end
    cp._donev = v
  end
  return v
end

function Context:err()
  object(self, Context, "context", 1, "err")
  local cp = self._cp
  if cp then overdue(cp) end
  if racing and cp then race_acq(cp) end
  return cp and cp._err or nil
end

function Context:deadline()
  object(self, Context, "context", 1, "deadline")
  local t = self._deadline
  return t, t ~= nil
end

function Context:value(k)
  object(self, Context, "context", 1, "value")
  if k == nil then return nil end
  local c = self
  repeat
    if rawequal(c._k, k) then return c._v end
    c = c._parent
  until c == nil
  return nil
end

local bg = setmetatable({}, Context)

local M = {}

function M.background()
  return bg
end

function M.with_cancel(parent)
  object(parent, Context, "context", 1, "with_cancel")
  return newcancel(parent)
end

local function with_deadline(parent, t)
  local pd = parent._deadline
  if pd and pd <= t then return newcancel(parent) end -- the parent's earlier deadline wins
  local c, f = newcancel(parent)
  c._deadline = t
  if not c._err then
    local d = t - now()
    if d <= 0 then
      cancel(c, DEADLINE, true)
    elseif t < math.huge then
      c._timer = after_func(d, expire, c)
    end
  end
  return c, f
end

function M.with_deadline(parent, t)
  object(parent, Context, "context", 1, "with_deadline")
  checktype(t, "number", 2, "with_deadline")
  return with_deadline(parent, t)
end

function M.with_timeout(parent, d)
  object(parent, Context, "context", 1, "with_timeout")
  checktype(d, "number", 2, "with_timeout")
  return with_deadline(parent, now() + d)
end

function M.with_value(parent, k, v)
  object(parent, Context, "context", 1, "with_value")
  check.arg(k ~= nil, 2, "with_value", "key must not be nil")
  return setmetatable({ _parent = parent, _cp = parent._cp, _deadline = parent._deadline,
    _k = k, _v = v }, Context)
end

return M
