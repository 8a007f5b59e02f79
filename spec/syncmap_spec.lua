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
    assert.equal("int", m:load(1)) -- 1.5 is a key of its own, as in a Lua table
    m:store(2, "two")
    m:store(2.5, "two and a half")
    m:store(-0.5, "minus a half")
    assert.same({ "two", true }, { m:load(2) })
    assert.same({ "two and a half", true }, { m:load(2.5) })
    assert.same({ nil, false }, { m:load(2.9) })
    assert.same({ "minus a half", true }, { m:load(-0.5) })
    assert.same({ nil, false }, { m:load(0) })
    local keys = {}
    m:range(function(k) keys[#keys + 1] = k end)
    local floats = 0
    for _, k in ipairs(keys) do
      if k == 2.5 or k == 1.5 or k == -0.5 then
        floats = floats + 1
        assert.equal("float", math.type(k)) -- range gives a float key back as it was stored
      end
    end
    assert.equal(3, floats)
    assert.matches("syncmap: key is NaN", raises(m.store, m, 0 / 0, 1)) -- as a Lua table's index
    assert.matches("syncmap: key is NaN", raises(m.load, m, 0 / 0))
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
    -- old compared as Lua's == (Go's ==): numbers by value, NaN equal to nothing
    assert.is_true(m:compare_and_swap("k", 3.0, 4))
    m:store("z", 0.0)
    assert.is_true(m:compare_and_swap("z", -0.0, 1))
    m:store("n", 0 / 0)
    assert.is_false(m:compare_and_swap("n", 0 / 0, 1))
    m:store("f", 2.5)
    assert.is_false(m:compare_and_swap("f", 2, 1))
    assert.is_true(m:compare_and_swap("f", 2.5, 1))
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

  it("range's f may block: each key goes over an unbuffered channel to another goroutine", function()
    local m, ch, done, got = csp.syncmap(), csp.chan(), csp.chan(), {}
    for i = 1, 5 do m:store(i, i * i) end
    csp.go(function()
      for k in ch:range() do got[#got + 1] = k end
      done:send(true)
    end)
    util.in_go(function()
      m:range(function(k, v) assert.equal(k * k, v); ch:send(k) end)
      ch:close()
    end)
    done:recv()
    table.sort(got)
    assert.same({ 1, 2, 3, 4, 5 }, got)
  end)

  it("range's f may yield (gosched); false still stops it, an error still propagates", function()
    local m = csp.syncmap()
    for i = 1, 5 do m:store(i, true) end
    util.in_go(function()
      local n = 0
      m:range(function() csp.gosched(); n = n + 1 end)
      assert.equal(5, n)
      n = 0
      m:range(function() csp.gosched(); n = n + 1; return false end)
      assert.equal(1, n)
      local ok, err = pcall(m.range, m, function() csp.gosched(); error("boom", 0) end)
      assert.same({ false, "boom" }, { ok, err })
    end)
  end)

  it("range visits its snapshot's keys once while another thread changes the map mid-range", function()
    local m, seen, n = csp.syncmap(), {}, 0
    for i = 1, 5 do m:store(i, i) end
    util.in_go(function()
      m:range(function(k)
        if n == 0 then  -- blocks on the join: the other thread empties the map and refills it
          csp.thread(function(m)
            for i = 1, 5 do m:delete(i) end
            for i = 6, 100 do m:store(i, i) end
          end, m):join()
        end
        n = n + 1
        assert.is_nil(seen[k])
        seen[k] = true
      end)
    end)
    assert.equal(5, n)
    for i = 1, 5 do assert.is_true(seen[i]) end
  end)

  it("a goroutine that ends mid-range (goexit after a yield) leaves the map usable", function()
    local m, done = csp.syncmap(), csp.chan()
    for i = 1, 5 do m:store(i, { i }) end
    csp.go(function()
      local _ <close> = csp.defer(done.close, done)
      m:range(function() csp.gosched(); csp.goexit() end)
    end)
    done:recv()
    collectgarbage()
    local n = 0
    m:range(function(k, v) assert.same({ k }, v); n = n + 1 end)
    assert.equal(5, n)
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
