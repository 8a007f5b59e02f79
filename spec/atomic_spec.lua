-- csp.atomic.int and csp.atomic.value (API.md "Threads"): Go's sync/atomic, shared between threads.
-- luacheck: ignore 431 432 433 (functions run by csp.thread take their own copies, by design)
local csp = require "csp"
local util = require "spec.helpers.util"
local raises = util.raises

describe("csp.atomic.int", function()
  it("load, store, add (returns the new value), swap (the old), cas", function()
    local a = csp.atomic.int()
    assert.equal(0, a:load())
    assert.equal(5, csp.atomic.int(5):load())
    a:store(10)
    assert.equal(13, a:add(3))
    assert.equal(11, a:add(-2))
    assert.equal(11, a:swap(20))
    assert.is_false(a:cas(11, 1))
    assert.is_true(a:cas(20, 1))
    assert.equal(1, a:load())
    assert.equal(math.mininteger, csp.atomic.int(math.maxinteger):add(1))  -- wraps, as in Go
    assert.matches("^csp.atomic.int: 1$", tostring(a))
  end)

  it("checks its arguments", function()
    local a = csp.atomic.int()
    assert.matches("number has no integer representation", raises(a.add, a, 1.5))
    assert.matches("bad argument #2 to '[^']*' %(number expected, got string%)", raises(a.store, a, "x"))
    assert.matches("atomic.int expected", raises(a.load, csp.atomic.value()))
    assert.matches("bad argument #1 to '[^']*'", raises(csp.atomic.int, "x"))
  end)

  it("2 threads x 1000 goroutines adding 1 count exactly 2000", function()
    local a, ts = csp.atomic.int(), {}
    for i = 1, 2 do
      ts[i] = csp.thread(function(a)
        local csp = require "csp"
        for _ = 1, 1000 do csp.go(function() a:add(1) end) end
        csp.run()
      end, a)
    end
    ts[1]:join()
    ts[2]:join()
    assert.equal(2000, a:load())
  end)

  it("a cas loop from several threads loses no update", function()
    local a, ts = csp.atomic.int(), {}
    for i = 1, 2 do
      ts[i] = csp.thread(function(a)
        for _ = 1, 20000 do
          repeat local v = a:load() until a:cas(v, v + 1)
        end
      end, a)
    end
    ts[1]:join()
    ts[2]:join()
    assert.equal(40000, a:load())
  end)
end)

describe("csp.atomic.value", function()
  it("loads nil until stored, then a copy of the last value", function()
    local v = csp.atomic.value()
    assert.is_nil(v:load())
    v:store({ a = 1 })
    assert.same({ a = 1 }, v:load())
    v:store({ b = 2 })
    assert.same({ b = 2 }, v:load())
  end)

  it("rejects nil and a change of type with Go's panic texts", function()
    local v = csp.atomic.value()
    assert.equal("sync/atomic: store of nil value into Value", raises(v.store, v, nil))
    assert.equal("sync/atomic: swap of nil value into Value", raises(v.swap, v, nil))
    assert.equal("sync/atomic: compare and swap of nil value into Value", raises(v.cas, v, nil, nil))
    v:store("s")
    assert.equal("sync/atomic: store of inconsistently typed value into Value", raises(v.store, v, 1))
    assert.equal("sync/atomic: swap of inconsistently typed value into Value", raises(v.swap, v, true))
    assert.equal("sync/atomic: compare and swap of inconsistently typed value into Value",
      raises(v.cas, v, 1, 2))
    assert.equal("sync/atomic: compare and swap of inconsistently typed values", raises(v.cas, v, "s", 2))
    assert.equal("sync/atomic: compare and swap of an incomparable value (a table)", raises(v.cas, v, {}, "t"))
    assert.equal("s", v:load())
    local n = csp.atomic.value()
    n:store(1)
    n:store(2.5)  -- one kind: numbers
    assert.equal(2.5, n:load())
    assert.matches("cannot send a function", raises(n.store, n, print))
  end)

  it("swap returns the old value; cas compares by value", function()
    local v = csp.atomic.value()
    assert.is_nil(v:swap("a"))
    assert.equal("a", v:swap("b"))
    assert.is_false(v:cas("a", "c"))
    assert.is_true(v:cas("b", "c"))
    assert.equal("c", v:load())
    assert.matches("nil value", raises(v.cas, v, "c", nil))
    assert.matches("incomparable", raises(v.cas, v, {}, "d"))
    local n = csp.atomic.value() -- numbers compare by value, as Lua's == (Go's ==)
    n:store(3)
    assert.is_true(n:cas(3.0, 4))
    n:store(0.0)
    assert.is_true(n:cas(-0.0, 1))
    n:store(0 / 0)
    assert.is_false(n:cas(0 / 0, 1))
    n:store(2.5)
    assert.is_false(n:cas(2, 1))
    assert.is_true(n:cas(2.5, 1))
    local e = csp.atomic.value()
    assert.is_true(e:cas(nil, 1))  -- an empty Value swaps from nil
    assert.is_false(e:cas(nil, 2))
  end)

  it("is shared between threads", function()
    local v = csp.atomic.value()
    v:store({ from = "main" })
    local t = csp.thread(function(v)
      local old = v:load()
      v:store({ from = "thread" })
      return old.from
    end, v)
    assert.equal("main", t:join())
    assert.equal("thread", v:load().from)
  end)

  it("both kinds are freed when the last handle in any state is collected", function()
    local base = util.shared_settles(0)
    do
      local n, v = csp.atomic.int(5), csp.atomic.value()
      v:store("kept")
      local t = csp.thread(function(n, v)  -- the thread's handles die with its state
        n:add(1)
        return v:load()
      end, n, v)
      assert.equal("kept", t:join())
      assert.equal(6, n:load())
      assert.is_true(util.shared_alive() > base)
    end
    assert.equal(base, util.shared_settles(base))
  end)
end)
