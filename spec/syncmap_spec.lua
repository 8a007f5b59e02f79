-- csp.syncmap: Go's sync.Map shared between threads (API.md "Threads"); values are copied.
-- luacheck: ignore 431 432 433 (functions run by csp.thread take their own copies, by design)
local csp = require "csp"
local util = require "spec.helpers.util"
local raises = util.raises

local alive, settles = util.shared_alive, util.shared_settles

describe("csp.syncmap", function()
  it("load and store, with Go's ok results", function()
    local m = csp.syncmap()
    assert.same({ nil, false }, { m:load("k") })
    m:store("k", { 1, 2 })
    assert.same({ { 1, 2 }, true }, { m:load("k") })
    m:store("k", "v2")
    assert.same({ "v2", true }, { m:load("k") })
    m:store("nil", nil)
    assert.same({ nil, true }, { m:load("nil") })
  end)

  it("copies values: changing what was stored or loaded changes nothing inside", function()
    local m, t = csp.syncmap(), { n = 1 }
    m:store(1, t)
    t.n = 2
    local a = m:load(1)
    a.n = 3
    assert.equal(1, m:load(1).n)
  end)

  it("keys: strings, numbers (1 and 1.0 are one key), booleans, shared objects; not tables", function()
    local m, x = csp.syncmap(), csp.xchan()
    m:store(1, "int")
    assert.equal("int", m:load(1.0))
    m:store(1.5, "f")
    m:store(true, "t")
    m:store(x, "chan")
    assert.equal("f", m:load(1.5))
    assert.equal("t", m:load(true))
    assert.equal("chan", m:load(x))
    assert.is_nil(m:load(csp.xchan()))
    assert.matches("syncmap: cannot use a table as a key", raises(m.store, m, {}, 1))
    assert.matches("syncmap: cannot use a function as a key", raises(m.load, m, print))
    assert.matches("cannot send a function", raises(m.store, m, "k", print))
  end)

  it("load_or_store returns the actual value and whether it was loaded", function()
    local m = csp.syncmap()
    assert.same({ "a", false }, { m:load_or_store("k", "a") })
    assert.same({ "a", true }, { m:load_or_store("k", "b") })
  end)

  it("load_and_delete, delete, swap, compare_and_swap", function()
    local m = csp.syncmap()
    assert.same({ nil, false }, { m:load_and_delete("k") })
    m:store("k", 1)
    assert.same({ 1, true }, { m:load_and_delete("k") })
    assert.same({ nil, false }, { m:load("k") })
    m:store("k", 1)
    m:delete("k")
    m:delete("absent")
    assert.same({ nil, false }, { m:load("k") })
    assert.same({ nil, false }, { m:swap("k", 1) })
    assert.same({ 1, true }, { m:swap("k", 2) })
    assert.is_false(m:compare_and_swap("k", 1, 3))
    assert.is_true(m:compare_and_swap("k", 2, 3))
    assert.equal(3, m:load("k"))
    assert.is_false(m:compare_and_swap("absent", nil, 1))
    assert.matches("incomparable", raises(m.compare_and_swap, m, "k", {}, 1))
  end)

  it("range calls f(k, v) for every entry and stops when f returns false", function()
    local m = csp.syncmap()
    for i = 1, 100 do m:store(i, i * i) end
    local sum, n = 0, 0
    m:range(function(k, v) assert.equal(k * k, v); sum = sum + k; n = n + 1 end)
    assert.equal(5050, sum)
    assert.equal(100, n)
    n = 0
    m:range(function() n = n + 1; return false end)
    assert.equal(1, n)
    m:range(function(k) m:delete(k) end)  -- f may change the map
    assert.same({ nil, false }, { m:load(1) })
    assert.matches("bad argument #%d to '[^']*' %(function expected", raises(m.range, m))
  end)

  it("checks self", function()
    local m = csp.syncmap()
    assert.matches("syncmap expected, got number", raises(m.load, 1, 1))
    assert.matches("syncmap expected, got csp.xchan", raises(m.store, csp.xchan(), 1, 1))
  end)

  it("is shared between threads: concurrent load_or_store picks one winner per key", function()
    local m, ts = csp.syncmap(), {}
    for i = 1, 2 do
      ts[i] = csp.thread(function(m, i)
        local won = 0
        for k = 1, 2000 do
          local _, loaded = m:load_or_store(k, i)
          if not loaded then won = won + 1 end
        end
        return won
      end, m, i)
    end
    local a, b = ts[1]:join(), ts[2]:join()
    assert.equal(2000, a + b)
    local n = 0
    m:range(function() n = n + 1 end)
    assert.equal(2000, n)
  end)

  it("frees its entries when the last handle is collected", function()
    local base = settles(0)
    do
      local m = csp.syncmap()
      m:store("x", csp.xchan())
      m:store(csp.atomic.int(), { csp.atomic.value() })
    end
    assert.equal(base, alive())
  end)
end)
