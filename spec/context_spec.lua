-- Contexts: cancellation trees, deadlines, values (API.md "Cancellation and groups", Go's context).
local csp = require "csp"

local CANCELED, DEADLINE = "context canceled", "context deadline exceeded"

-- Raises unless f(...) raises; returns the error as a string.
local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

-- true when ch is closed: a receive completes at once with ok == false.
local function closed(ch)
  local _, ok, done = ch:try_recv()
  return done and not ok
end

-- Blocks until ctx is done (failing after 2 s rather than hanging) and returns the seconds
-- it took.
local function time_done(ctx)
  local t0 = csp.now()
  local i, _, ok = csp.select { csp.recv(ctx:done()), csp.recv(csp.after(2)) }
  assert.are.equal(1, i, "not done after 2 s")
  assert.is_false(ok)
  return csp.now() - t0
end

-- Lets the goroutines that are ready run (the deadline helper ends this way once idle).
local function settle()
  for _ = 1, 3 do csp.gosched() end
end

describe("background", function()
  it("is never cancelled: done() is nil, err() nil, no deadline, no values", function()
    local bg = csp.background()
    assert.is_nil(bg:done())
    assert.is_nil(bg:err())
    local t, ok = bg:deadline()
    assert.is_nil(t)
    assert.is_false(ok)
    assert.is_nil(bg:value("k"))
    assert.are.equal(bg, csp.background())
  end)

  it("gives a select case that is never ready", function()
    local i = csp.select { csp.recv(csp.background():done()), default = true }
    assert.are.equal(0, i)
  end)
end)

describe("with_cancel", function()
  it("closes done() and sets err() on cancel; cancel is idempotent", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    local done = ctx:done()
    assert.is_not_nil(done)
    assert.are.equal(done, ctx:done())
    assert.is_false(closed(done))
    assert.is_nil(ctx:err())
    cancel()
    assert.is_true(closed(done))
    assert.are.equal(CANCELED, ctx:err())
    cancel()
    assert.are.equal(CANCELED, ctx:err())
    assert.are.equal(done, ctx:done())
  end)

  it("err() returns one value, Go's words (print(ctx:err()) prints what Go's does)", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    assert.are.same({ n = 1 }, table.pack(ctx:err()))
    cancel()
    assert.are.same({ n = 1, CANCELED }, table.pack(ctx:err()))
    local tctx, tcancel = csp.with_timeout(csp.background(), -1)
    assert.are.same({ n = 1, DEADLINE }, table.pack(tctx:err()))
    tcancel()
    assert.are.same({ n = 1, DEADLINE }, table.pack(tctx:err()), "the first error stays")
    local child = csp.with_value(tctx, "k", 1)
    assert.are.same({ n = 1, DEADLINE }, table.pack(child:err()))
    assert.are.same({ n = 1 }, table.pack(csp.background():err()), "nil alone when not cancelled")
  end)

  it("done() is receive-only (Go's <-chan struct{}): only cancel closes it", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    local child = csp.with_cancel(ctx)
    local done = ctx:done()
    assert.has_error(function() done:close() end, "close of receive-only channel")
    assert.has_error(function() done:send(1) end, "send to receive-only channel")
    assert.has_error(function() done:try_send(1) end, "send to receive-only channel")
    assert.is_nil(ctx:err())
    cancel()
    assert.is_true(closed(done))
    assert.are.equal(CANCELED, child:err(), "children cancelled too")
    local late, lcancel = csp.with_cancel(csp.background())
    lcancel()
    assert.has_error(function() late:done():close() end, "close of receive-only channel")
  end)

  it("gives a closed done() when asked only after cancel", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    cancel()
    assert.is_true(closed(ctx:done()))
  end)

  it("wakes a goroutine blocked in select on ctx:done()", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    local never, parked, out = csp.chan(), csp.chan(), csp.chan(1)
    csp.go(function()
      parked:send(true) -- runs on into the select and parks before main resumes
      out:send((csp.select { csp.recv(never), csp.recv(ctx:done()) }))
    end)
    parked:recv()
    assert.are.equal(0, out:len())
    cancel()
    assert.are.equal(2, out:recv())
  end)

  it("propagates cancellation to every descendant, through value contexts", function()
    local root, cancel = csp.with_cancel(csp.background())
    local a = csp.with_cancel(root)
    local av = csp.with_value(a, "k", 1)
    local a2 = csp.with_cancel(av)
    local b = csp.with_timeout(root, 60)
    local b2 = csp.with_value(b, "k", 2)
    local all = { a, av, a2, b, b2 }
    local dones = {}
    for i, c in ipairs(all) do dones[i] = c:done() end
    -- one goroutine parked on a grandchild's done channel
    local woke = csp.chan(1)
    csp.go(function() woke:send((select(2, a2:done():recv()))) end)
    cancel()
    for i, c in ipairs(all) do
      assert.are.equal(CANCELED, c:err())
      assert.is_true(closed(dones[i]))
    end
    assert.is_false(woke:recv())
  end)

  it("cancelling a child leaves its parent and siblings alone", function()
    local root, cancel_root = csp.with_cancel(csp.background())
    local a, cancel_a = csp.with_cancel(root)
    local a1 = csp.with_cancel(a)
    local b = csp.with_cancel(root)
    cancel_a()
    assert.are.equal(CANCELED, a:err())
    assert.are.equal(CANCELED, a1:err())
    assert.is_nil(root:err())
    assert.is_nil(b:err())
    assert.is_false(closed(b:done()))
    cancel_root()
    assert.are.equal(CANCELED, b:err())
  end)

  it("cancels at once a child of an already cancelled parent", function()
    local parent, cancel = csp.with_cancel(csp.background())
    cancel()
    local child, cancel_child = csp.with_cancel(parent)
    assert.are.equal(CANCELED, child:err())
    assert.is_true(closed(child:done()))
    local timed = csp.with_timeout(parent, 60)
    assert.are.equal(CANCELED, timed:err()) -- the parent's error, not a deadline
    cancel_child()
  end)

  it("keeps the parent's error once cancelled (a later parent cancel changes nothing)", function()
    local parent, cancel_parent = csp.with_timeout(csp.background(), 60)
    local child, cancel_child = csp.with_cancel(parent)
    cancel_child()
    cancel_parent()
    assert.are.equal(CANCELED, child:err())
  end)

  describe("releases children", function()
    -- Creates a child of parent (via make) in a function of its own, so no register of the
    -- caller keeps it; returns a weak table holding the child and its cancel function.
    local function child_of(parent, make)
      local seen = setmetatable({}, { __mode = "k" })
      local child, cancel = make(parent)
      seen[child] = true
      return seen, cancel
    end

    local function gone(seen)
      collectgarbage()
      collectgarbage()
      return next(seen) == nil
    end

    local makers = {
      with_cancel = function(p) return csp.with_cancel(p) end,
      with_timeout = function(p) return csp.with_timeout(p, 60) end,
      ["with_cancel under with_value"] = function(p) return csp.with_cancel(csp.with_value(p, 1, 2)) end,
    }
    for name, make in pairs(makers) do
      it("a long-lived parent drops a " .. name .. " child once it is cancelled", function()
        local parent, cancel_parent = csp.with_cancel(csp.background())
        local seen, cancel = child_of(parent, make)
        cancel()
        cancel = nil -- luacheck: ignore
        assert.is_true(gone(seen))
        assert.is_nil(parent:err())
        -- without cancel the parent keeps the child (Go's leak) until the parent is cancelled
        local kept = child_of(parent, make)
        assert.is_false(gone(kept))
        cancel_parent()
        assert.is_true(gone(kept))
      end)
    end
  end)
end)

describe("with_timeout and with_deadline", function()
  it("cancels at now + d with 'context deadline exceeded', on time", function()
    local d = 0.05
    local before = csp.now()
    local ctx, cancel = csp.with_timeout(csp.background(), d)
    local t, ok = ctx:deadline()
    assert.is_true(ok)
    assert.is_true(t >= before + d and t <= csp.now() + d)
    assert.is_nil(ctx:err())
    local took = time_done(ctx)
    assert.is_true(took >= d - 0.002, "fired early: " .. took)
    assert.is_true(took < d + 0.1, "fired late: " .. took)
    assert.are.equal(DEADLINE, ctx:err())
    cancel() -- after expiry: changes nothing
    assert.are.equal(DEADLINE, ctx:err())
  end)

  it("with_deadline(t) fires at t and reports t", function()
    local t = csp.now() + 0.03
    local ctx = csp.with_deadline(csp.background(), t)
    assert.are.equal(t, (ctx:deadline()))
    time_done(ctx)
    assert.is_true(csp.now() >= t - 0.002)
    assert.are.equal(DEADLINE, ctx:err())
  end)

  it("a deadline already past cancels at once", function()
    local ctx = csp.with_deadline(csp.background(), csp.now() - 1)
    assert.are.equal(DEADLINE, ctx:err())
    assert.is_true(closed(ctx:done()))
    local ctx2 = csp.with_timeout(csp.background(), 0)
    assert.are.equal(DEADLINE, ctx2:err())
  end)

  it("a parent's earlier deadline wins", function()
    local parent = csp.with_timeout(csp.background(), 0.04)
    local pt = parent:deadline()
    local child, cancel = csp.with_timeout(parent, 60)
    assert.are.equal(pt, (child:deadline()))
    local took = time_done(child)
    assert.is_true(took < 0.04 + 0.1)
    assert.are.equal(DEADLINE, child:err())
    assert.are.equal(DEADLINE, parent:err())
    cancel()
  end)

  it("a child's earlier deadline fires first and leaves the parent running", function()
    local parent, cancel = csp.with_timeout(csp.background(), 60)
    local child = csp.with_timeout(parent, 0.02)
    local grandchild = csp.with_cancel(child)
    time_done(grandchild)
    assert.are.equal(DEADLINE, child:err())
    assert.are.equal(DEADLINE, grandchild:err())
    assert.is_nil(parent:err())
    cancel()
    assert.are.equal(CANCELED, parent:err())
  end)

  it("fires deadlines in deadline order, whatever the creation order", function()
    local order = csp.chan(3)
    for i, d in ipairs { 0.05, 0.01, 0.03 } do
      local ctx = csp.with_timeout(csp.background(), d)
      csp.go(function()
        ctx:done():recv()
        order:send(i)
      end)
    end
    assert.are.same({ 2, 3, 1 }, { order:recv(), order:recv(), (order:recv()) })
  end)

  it("a new earlier deadline fires on time while a later one is pending", function()
    local late, cancel_late = csp.with_timeout(csp.background(), 60)
    csp.gosched() -- let the deadline helper park on the 60 s deadline
    local early = csp.with_timeout(csp.background(), 0.02)
    local took = time_done(early)
    assert.is_true(took < 0.02 + 0.1, "fired late: " .. took)
    assert.is_nil(late:err())
    cancel_late()
  end)

  it("cancel before the deadline gives 'context canceled' and leaves no goroutine", function()
    settle()
    local base = csp.numgoroutine()
    local cancels = {}
    for i = 1, 100 do
      local ctx, cancel = csp.with_timeout(csp.background(), 30 + i)
      cancels[i] = cancel
      if i == 100 then
        cancel()
        assert.are.equal(CANCELED, ctx:err())
      end
    end
    settle()
    assert.is_true(csp.numgoroutine() <= base + 1, "a goroutine per timed context")
    for _, cancel in ipairs(cancels) do cancel() end
    settle()
    assert.are.equal(base, csp.numgoroutine())
  end)

  it("leaves no goroutine once its deadlines have fired", function()
    settle()
    local base = csp.numgoroutine()
    time_done(csp.with_timeout(csp.background(), 0.01))
    settle()
    assert.are.equal(base, csp.numgoroutine())
  end)

  it("accepts deadlines too far to fire", function()
    settle()
    local base = csp.numgoroutine()
    local inf = csp.with_timeout(csp.background(), math.huge)
    assert.are.same({ math.huge, true }, { inf:deadline() })
    local far, cancel = csp.with_timeout(csp.background(), 1e300)
    settle()
    assert.is_nil(inf:err())
    assert.is_nil(far:err())
    cancel()
    settle()
    assert.are.equal(base, csp.numgoroutine())
  end)

  it("10k contexts with deadlines, then cancelled, leave the timer heap as it was", function()
    settle()
    collectgarbage()
    collectgarbage() -- earlier specs' unreachable timer channels leave the heap when collected
    local base = csp.stats().timer_heap
    local cancels = {}
    for i = 1, 10000 do
      local _, cancel = csp.with_timeout(csp.background(), 30 + i % 100)
      cancels[i] = cancel
    end
    assert.are.equal(base + 10000, csp.stats().timer_heap, "a heap node per deadline")
    for _, cancel in ipairs(cancels) do cancel() end
    assert.are.equal(base, csp.stats().timer_heap)
    -- and deadlines that fire leave nothing either
    local ctxs = {}
    for i = 1, 100 do ctxs[i] = csp.with_timeout(csp.background(), 0.001 * (i % 5)) end
    for _, ctx in ipairs(ctxs) do time_done(ctx) end
    settle()
    collectgarbage()
    collectgarbage() -- time_done's after channels
    assert.are.equal(base, csp.stats().timer_heap)
  end)

  it("a cancelled child's deadline leaves the heap with its parent's cancel", function()
    collectgarbage()
    collectgarbage()
    local base = csp.stats().timer_heap
    local parent, cancel = csp.with_cancel(csp.background())
    for i = 1, 10 do csp.with_timeout(parent, 30 + i) end
    assert.are.equal(base + 10, csp.stats().timer_heap)
    cancel()
    assert.are.equal(base, csp.stats().timer_heap)
  end)

  it("a pending deadline is no deadlock: a goroutine waiting on done() wakes", function()
    local ctx = csp.with_timeout(csp.background(), 0.02)
    local _, ok = ctx:done():recv()  -- main blocks with nothing else that could wake it
    assert.is_false(ok)
    assert.are.equal(DEADLINE, ctx:err())
  end)

  -- Go: a loop that never blocks is preempted and the due timer runs; csp does not preempt, so
  -- err() and done() look at the clock themselves.
  it("is done once its deadline has passed, in a loop that never blocks", function()
    local function busy_until(t) while csp.now() < t do end end
    local parent = csp.with_timeout(csp.background(), 0.005)
    local child = csp.with_value(csp.with_cancel(parent), "k", "v")
    local sibling = csp.with_cancel(parent)
    local polled = csp.with_timeout(csp.background(), 0.005)
    local n, limit = 0, polled:deadline() + 1
    while not polled:err() and csp.now() < limit do n = n + 1 end -- no timer needs to run
    assert.are.equal(DEADLINE, polled:err())
    assert.is_true(csp.now() < limit and n > 0)
    busy_until(parent:deadline())
    assert.are.equal(1, (csp.select { csp.recv(child:done()), default = true }))
    assert.are.equal(DEADLINE, child:err())
    assert.are.equal(DEADLINE, parent:err()) -- the owner of the deadline expired, with its children
    assert.are.equal(DEADLINE, sibling:err())
    assert.is_true(closed(parent:done()))
  end)

  it("propagates 'context deadline exceeded' to descendants", function()
    local parent = csp.with_timeout(csp.background(), 0.02)
    local child = csp.with_value(csp.with_cancel(parent), "k", "v")
    time_done(child)
    assert.are.equal(DEADLINE, child:err())
  end)
end)

describe("with_value", function()
  it("finds the nearest binding, even a binding to nil, through other contexts", function()
    local bg = csp.background()
    local a = csp.with_value(bg, "k", "outer")
    local b = csp.with_value(a, "other", 1)
    local c = csp.with_cancel(b)
    local d = csp.with_value(c, "k", "inner")
    local e = csp.with_value(d, "k", nil)
    assert.are.equal("outer", a:value("k"))
    assert.are.equal("outer", c:value("k"))
    assert.are.equal("inner", d:value("k"))
    assert.is_nil(e:value("k"))
    assert.are.equal(1, e:value("other"))
    assert.is_nil(e:value("missing"))
    assert.is_nil(e:value(nil))
  end)

  it("compares keys by identity", function()
    local k1, k2 = {}, {}
    local ctx = csp.with_value(csp.with_value(csp.background(), k1, "one"), k2, "two")
    assert.are.equal("one", ctx:value(k1))
    assert.are.equal("two", ctx:value(k2))
    assert.is_nil(ctx:value({}))
    assert.is_nil(ctx:value("1"))
  end)

  it("shares its parent's cancellation and deadline", function()
    local parent, cancel = csp.with_timeout(csp.background(), 60)
    local v = csp.with_value(parent, "k", 1)
    assert.are.equal(parent:done(), v:done())
    assert.are.equal((parent:deadline()), (v:deadline()))
    assert.is_nil(v:err())
    cancel()
    assert.are.equal(CANCELED, v:err())
    assert.is_nil(csp.with_value(csp.background(), 1, 2):done())
  end)
end)

describe("bad arguments", function()
  local bg = csp.background()

  it("name the function and the argument", function()
    assert.matches("bad argument #1 to 'with_cancel' %(context expected, got nil%)",
      raises(csp.with_cancel))
    assert.matches("bad argument #1 to 'with_cancel' %(context expected, got table%)",
      raises(csp.with_cancel, {}))
    assert.matches("bad argument #1 to 'with_timeout' %(context expected",
      raises(csp.with_timeout, 1, 1))
    assert.matches("bad argument #2 to 'with_timeout' %(number expected, got string%)",
      raises(csp.with_timeout, bg, "1"))
    assert.matches("bad argument #2 to 'with_deadline' %(number expected, got nil%)",
      raises(csp.with_deadline, bg))
    assert.matches("bad argument #2 to 'with_deadline' %(number expected, got nan%)",
      raises(csp.with_deadline, bg, 0 / 0))
    assert.matches("bad argument #1 to 'with_value' %(context expected",
      raises(csp.with_value, "x", 1, 2))
    assert.matches("bad argument #2 to 'with_value' %(key must not be nil%)",
      raises(csp.with_value, bg, nil, 2))
    assert.matches("bad argument #1 to 'done' %(context expected, got nil%)",
      raises(bg.done))
    assert.matches("bad argument #1 to 'err' %(context expected", raises(bg.err, {}))
  end)
end)
