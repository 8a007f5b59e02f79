-- csp.context: Go's context package on channels.
--
-- Exports (install each into `csp` under the same name):
--   background(), with_cancel(parent), with_timeout(parent, d), with_deadline(parent, t),
--   with_value(parent, k, v)
-- Context methods: ctx:done(), ctx:err(), ctx:deadline() -> t, ok, ctx:value(k).
--
-- A plain module over csp.core; init.lua copies its exports into `csp`.
--
-- One metatable serves every kind of context. Each context caches `_cp`, the nearest
-- cancelable context at or above it (nil under background alone), and `_deadline`, the
-- effective deadline, so done/err/deadline never walk the chain; only value() does.
-- A cancelable context keeps its children in `_kids` until it is cancelled, and a cancelled
-- child removes itself from its parent's set, so long-lived parents do not accumulate them.
-- Deadlines live in one heap served by a single internal goroutine (core._go_internal: not
-- counted by numgoroutine, not dumped, not waited for by csp.run) that exists only while a
-- deadline is pending.
local core = require "csp.core"
local check = require "csp.check"

local chan, select, recv, timer, now = core.chan, core.select, core.recv, core.timer, core.now
-- The deadline server is csp's own goroutine: not counted, not dumped, not waited for by run.
local go = core._go_internal or core.go
-- Race detector (chosen at load; off: no call): cancel releases, err() acquires, as Go's c.mu.
local racing = core._race_enabled and core._race_enabled()
local race_rel, race_acq = core._race_release, core._race_acquire

local CANCELED, DEADLINE = "context canceled", "context deadline exceeded"

local Context = { __name = "csp.context" }
Context.__index = Context

-- done() of a context cancelled before anyone asked for its channel.
local closedchan = chan()
closedchan:close()

local object, checktype = check.object, check.type

-- Deadline heap: an array of contexts ordered by _deadline; c._hpos is c's index.
local heap, hn = {}, 0
local running, parked = false, false
local wake -- unbuffered: try_send succeeds exactly when the service is parked on it

local function swap(i, j)
  local a, b = heap[i], heap[j]
  heap[i], heap[j] = b, a
  a._hpos, b._hpos = j, i
end

local function up(i)
  while i > 1 do
    local p = i // 2
    if heap[p]._deadline <= heap[i]._deadline then return end
    swap(i, p)
    i = p
  end
end

local function down(i)
  while true do
    local l, m = 2 * i, i
    if l <= hn and heap[l]._deadline < heap[m]._deadline then m = l end
    if l + 1 <= hn and heap[l + 1]._deadline < heap[m]._deadline then m = l + 1 end
    if m == i then return end
    swap(i, m)
    i = m
  end
end

local function hremove(c)
  local i = c._hpos
  c._hpos = nil
  local last = heap[hn]
  heap[hn] = nil
  hn = hn - 1
  if i <= hn then
    heap[i], last._hpos = last, i
    up(i)
    down(last._hpos)
  end
  -- An empty heap lets the service end now rather than at the removed deadline.
  if hn == 0 and parked then wake:try_send(true) end
end

local cancel

local function service()
  while hn > 0 do
    local d = heap[1]._deadline - now()
    if d > 0 then
      local tm = timer(d < 86400 and d or 86400) -- far deadlines re-arm daily: no ns overflow
      parked = true
      local i = select { recv(tm.c), recv(wake) }
      parked = false
      if i ~= 1 then tm:stop() end
    end
    local t = now()
    while hn > 0 and heap[1]._deadline <= t do
      if racing then race_acq(heap[1]) end -- with_deadline's caller before its timer fires
      cancel(heap[1], DEADLINE, true)
    end
  end
  running = false
end

local function hpush(c)
  if racing then race_rel(c) end
  hn = hn + 1
  heap[hn], c._hpos = c, hn
  up(hn)
  if not running then
    running = true
    wake = wake or chan()
    go(service)
  elseif c._hpos == 1 and parked then
    wake:try_send(true) -- earlier than what the service sleeps for
  end
end

-- Cancels c and its descendants with err. `detach`: remove c from its parent's set (not
-- needed when the parent is being cancelled too: it drops the whole set).
function cancel(c, err, detach)
  if c._err then return end
  if racing then race_rel(c) end
  c._err = err
  local d = c._done
  if d then d:close() end
  if c._hpos then hremove(c) end
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
    _err = nil, _done = nil, _kids = nil }, Context)
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

function Context:done()
  object(self, Context, "context", 1, "done")
  local cp = self._cp
  if not cp then return nil end
  local d = cp._done
  if not d then
    -- Made on first use: contexts only polled with err() never allocate a channel.
    d = cp._err and closedchan or chan()
    cp._done = d
  end
  return d
end

function Context:err()
  object(self, Context, "context", 1, "err")
  local cp = self._cp
  if racing and cp then race_acq(cp) end
  return cp and cp._err
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
    if t <= now() then
      cancel(c, DEADLINE, true)
    elseif t < math.huge then
      hpush(c)
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
