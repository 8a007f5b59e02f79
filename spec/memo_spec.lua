-- memo: concurrent cache with duplicate suppression (API.md "Cancellation and groups", gopl 9.7).
local csp = require "csp"

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

-- A function that counts its calls per key, returning "v:<key>" once `gate` lets it.
local function counted(gate)
  local calls = {}
  local function f(key)
    calls[key] = (calls[key] or 0) + 1
    if gate then gate:recv() end
    return "v:" .. tostring(key)
  end
  return f, calls
end

describe("memo", function()
  it("returns every value f returned, nils included, and caches them", function()
    local n = 0
    local m = csp.memo(function(key)
      n = n + 1
      if key == "none" then return end
      return key, nil, 3, nil
    end)
    local r = table.pack(m:get("a"))
    assert.are.equal(4, r.n)
    assert.are.same({ "a", nil, 3, nil, n = 4 }, r)
    assert.are.equal(0, select("#", m:get("none")))
    assert.are.equal(4, select("#", m:get("a")))
    assert.are.equal(0, select("#", m:get("none")))
    assert.are.equal(2, n)
  end)

  it("keeps keys of different types apart", function()
    local f, calls = counted()
    local m = csp.memo(f)
    assert.are.equal("v:1", m:get(1))
    assert.are.equal("v:1", m:get("1"))
    assert.are.equal("v:true", m:get(true))
    assert.are.equal("v:1", m:get(1.0)) -- 1 and 1.0 are the same Lua key
    assert.are.same({ [1] = 1, ["1"] = 1, [true] = 1 }, calls)
  end)

  it("1000 concurrent callers of 10 keys call f exactly 10 times, concurrently", function()
    local everyone, inflight, most = csp.chan(), 0, 0
    local calls = {}
    local m = csp.memo(function(key)
      calls[key] = (calls[key] or 0) + 1
      inflight = inflight + 1
      most = math.max(most, inflight)
      everyone:recv() -- closed by the last caller to arrive: every call overlaps every caller
      inflight = inflight - 1
      return key * 10, "second"
    end)
    local results, arrived = csp.chan(1000), 0
    for i = 1, 1000 do
      csp.go(function()
        local key = i % 10
        arrived = arrived + 1
        if arrived == 1000 then everyone:close() end
        local v, s = m:get(key)
        results:send(v == key * 10 and s == "second")
      end)
    end
    for _ = 1, 1000 do assert.is_true(results:recv()) end
    for key = 0, 9 do assert.are.equal(1, calls[key]) end
    assert.are.equal(10, most)
  end)

  it("different keys run concurrently", function()
    local b_started = csp.chan()
    local m = csp.memo(function(key)
      if key == "a" then
        b_started:recv() -- would deadlock if "b" waited for "a" to finish
        return "A"
      end
      b_started:close()
      return "B"
    end)
    local out = csp.chan(1)
    csp.go(function() out:send(m:get("a")) end)
    assert.are.equal("B", m:get("b"))
    assert.are.equal("A", out:recv())
  end)

  it("gives a returned nil, err to every waiter of the call and keeps it", function()
    local gate = csp.chan()
    local n = 0
    local m = csp.memo(function(key)
      n = n + 1
      gate:recv()
      return nil, "no " .. key
    end)
    local out, arrived = csp.chan(5), 0
    for _ = 1, 5 do
      csp.go(function()
        arrived = arrived + 1
        if arrived == 5 then gate:close() end -- the call cannot finish before all have joined
        local v, err = m:get("x")
        out:send({ v, err })
      end)
    end
    for _ = 1, 5 do assert.are.same({ nil, "no x" }, out:recv()) end
    assert.are.same({ nil, "no x" }, { m:get("x") })
    assert.are.equal(1, n)
  end)

  it("re-raises a raised error to the caller and every waiter; a later get calls f again", function()
    local gate = csp.chan()
    local n = 0
    local m = csp.memo(function(key)
      n = n + 1
      if n == 1 then
        gate:recv()
        error("broken " .. key)
      end
      return "fixed"
    end)
    local out, arrived = csp.chan(4), 0
    for _ = 1, 4 do
      csp.go(function()
        arrived = arrived + 1
        if arrived == 4 then gate:close() end
        out:send(table.pack(pcall(m.get, m, "k")))
      end)
    end
    for _ = 1, 4 do
      local r = out:recv()
      assert.is_false(r[1])
      assert.matches("broken k", r[2])
    end
    assert.are.equal(1, n)
    assert.are.equal("fixed", m:get("k"))
    assert.are.equal("fixed", m:get("k"))
    assert.are.equal(2, n)
  end)

  it("keeps a raised non-string error value as it is", function()
    local e = {}
    local m = csp.memo(function() error(e) end)
    local ok, err = pcall(m.get, m, 1)
    assert.is_false(ok)
    assert.are.equal(e, err)
  end)

  it("keeps a single result of any value, false and nil included, on every hit", function()
    local f, calls = counted()
    local values = { t = true, f = false, z = 0, s = "" }
    local m = csp.memo(function(key) f(key) return values[key] end)
    for _ = 1, 3 do
      for _, key in ipairs { "t", "f", "z", "s", "nil" } do
        local r = table.pack(m:get(key))
        assert.are.same({ values[key], n = 1 }, r)
      end
    end
    assert.are.same({ t = 1, f = 1, z = 1, s = 1, ["nil"] = 1 }, calls)
  end)

  it("forget drops a key: the next get calls f again", function()
    local f, calls = counted()
    local m = csp.memo(f)
    m:get("a")
    m:get("b")
    m:forget("a")
    m:forget("never-seen")
    m:get("a")
    m:get("b")
    assert.are.same({ a = 2, b = 1 }, calls)
  end)

  it("forget during a call: its waiters still get that call's result, new callers a new call", function()
    local gates, entered = { csp.chan(), csp.chan() }, csp.chan()
    local n = 0
    local m = csp.memo(function()
      n = n + 1
      local mine = n
      entered:send(mine)
      gates[mine]:recv()
      return mine
    end)
    local out, parked = csp.chan(3), csp.chan()
    csp.go(function() out:send(m:get("k")) end)
    assert.are.equal(1, entered:recv())
    csp.go(function()
      parked:send(true) -- runs on into m:get and waits for call 1 before main resumes
      out:send(m:get("k"))
    end)
    parked:recv()
    csp.go(function()
      m:forget("k")
      out:send(m:get("k"))
    end)
    assert.are.equal(2, entered:recv())
    gates[2]:close()
    assert.are.equal(2, out:recv()) -- the call started after forget
    gates[1]:close()
    assert.are.equal(1, out:recv())
    assert.are.equal(1, out:recv())
    assert.are.equal(2, m:get("k"))
    assert.are.equal(2, n)
  end)

  it("a waiter whose call ends by csp.goexit gets an error instead of hanging", function()
    local entered, gate = csp.chan(), csp.chan()
    local n = 0
    local m = csp.memo(function()
      n = n + 1
      if n > 1 then return "again" end
      entered:send(true)
      gate:recv()
      csp.goexit()
    end)
    local out, parked = csp.chan(1), csp.chan()
    csp.go(function() m:get("k") end)
    entered:recv()
    csp.go(function()
      parked:send(true)
      out:send(table.pack(pcall(m.get, m, "k")))
    end)
    parked:recv()
    gate:close()
    local r = out:recv()
    assert.is_false(r[1])
    assert.matches("did not return", r[2])
    assert.are.equal("again", m:get("k")) -- the entry was dropped
  end)

  it("rejects bad arguments, naming them", function()
    local m = csp.memo(function(k) return k end)
    assert.matches("bad argument #1 to 'memo' %(function expected, got nil%)", raises(csp.memo))
    assert.matches("bad argument #1 to 'memo' %(function expected, got table%)", raises(csp.memo, {}))
    assert.matches("bad argument #1 to 'get' %(key must not be nil%)", raises(m.get, m, nil))
    assert.matches("bad argument #1 to 'get' %(key must not be NaN%)", raises(m.get, m, 0 / 0))
    assert.matches("bad argument #1 to 'forget' %(key must not be nil%)", raises(m.forget, m))
    local called = csp.memo(setmetatable({}, { __call = function(_, k) return k + 1 end }))
    assert.are.equal(2, called:get(1))
  end)
end)
