-- csp.pool: API.md "sync" (Go's sync.Pool): get returns a pooled object or new(); pooled
-- objects may be dropped by the garbage collector, and get never hands out a dropped one.
local csp = require "csp"
local util = require "spec.helpers.util"
local raises = util.raises

-- A pool whose new() makes fresh tables and remembers them (weakly, so it keeps none alive).
local function counting_pool()
  local made = setmetatable({}, { __mode = "k" })
  local n = 0
  local p = csp.pool(function()
    n = n + 1
    local x = { fresh = n }
    made[x] = true
    return x
  end)
  return p, made, function() return n end
end

local function full_gc()
  collectgarbage()
  collectgarbage()
end

describe("csp.pool", function()
  it("get returns a put object, then new() once the pool is empty", function()
    local p, made, count = counting_pool()
    local a = {}
    p:put(a)
    assert.equal(a, p:get())
    assert.equal(0, count())
    local x = p:get()
    assert.is_true(made[x])
    assert.equal(1, count())
  end)

  it("returns every put object once before calling new()", function()
    local p, _, count = counting_pool()
    local objs, seen = { {}, {}, {}, "s", 42 }, {}
    for _, o in ipairs(objs) do p:put(o) end
    for _ = 1, #objs do
      local o = p:get()
      assert.is_nil(seen[o], "an object came out twice")
      seen[o] = true
    end
    for _, o in ipairs(objs) do assert.is_true(seen[o]) end
    assert.equal(0, count())
    assert.is_table(p:get())
    assert.equal(1, count())
  end)

  it("get without new returns nil when empty", function()
    local p = csp.pool()
    assert.is_nil(p:get())
    local a = {}
    p:put(a)
    assert.equal(a, p:get())
    assert.is_nil(p:get())
  end)

  it("ignores put(nil), as Go's Put does", function()
    local p = csp.pool()
    p:put(nil)
    assert.is_nil(p:get())
    local q, made = counting_pool()
    q:put(nil)
    assert.is_true(made[q:get()])
  end)

  it("never returns an object the collector dropped: get falls back to new()", function()
    local p, made, count = counting_pool()
    for _ = 1, 20 do p:put({ pooled = true }) end
    full_gc()
    for _ = 1, 20 do
      local x = p:get()
      assert.is_table(x, "get returned a dropped slot")
      assert.is_true(made[x], "get returned an object that was not put nor made by new()")
    end
    assert.equal(20, count())
  end)

  it("keeps objects still referenced elsewhere and skips the dropped ones", function()
    local p, made = counting_pool()
    local keep1, keep2 = { "keep1" }, { "keep2" }
    p:put(keep1)
    for _ = 1, 5 do p:put({}) end
    p:put(keep2)
    for _ = 1, 5 do p:put({}) end
    full_gc()
    local got = { p:get(), p:get() }
    -- which kept object comes first is the pool's business; both must come back
    assert.is_true((got[1] == keep1 and got[2] == keep2) or (got[1] == keep2 and got[2] == keep1))
    assert.is_true(made[p:get()])
  end)

  it("without new returns nil, not a dropped object, after a collection", function()
    local p = csp.pool()
    for _ = 1, 10 do p:put({}) end
    full_gc()
    assert.is_nil(p:get())
    local a = {}
    p:put(a)
    assert.equal(a, p:get())
  end)

  it("stays usable for puts and gets after many collections", function()
    local p, made = counting_pool()
    local kept = {}
    for round = 1, 5 do
      for i = 1, 10 do
        local o = { round = round, i = i }
        p:put(o)
        if i % 2 == 0 then kept[#kept + 1] = o end
      end
      full_gc()
    end
    local back = 0
    for _ = 1, #kept do
      local o = p:get()
      assert.is_table(o)
      assert.is_nil(made[o])
      back = back + 1
    end
    assert.equal(#kept, back)
    assert.is_true(made[p:get()])
  end)

  it("is shared between goroutines", function()
    local p, made = counting_pool()
    local res = csp.chan()
    local a = {}
    p:put(a)
    csp.go(function()
      local x = p:get()
      p:put({ from = "goroutine" })
      res:send(x)
    end)
    assert.equal(a, res:recv())
    local y = p:get()
    assert.equal("goroutine", y.from)
    assert.is_true(made[p:get()])
  end)

  it("new() may block (it runs in the caller)", function()
    local gate = csp.chan(1)
    local p = csp.pool(function() return gate:recv() end)
    csp.go(function() gate:send("made") end)
    assert.equal("made", p:get())
  end)

  it("requires new to be a function or nil", function()
    for _, bad in ipairs({ 42, "x", {}, true }) do
      assert.matches("bad argument #1", raises(csp.pool, bad), 1, true)
    end
  end)

  it("methods raise an error naming their first argument on a non-pool", function()
    local p = csp.pool()
    for _, bad in ipairs({ 42, "x", true, {}, csp.mutex() }) do
      for _, msg in ipairs({ raises(p.get, bad), raises(p.put, bad, {}) }) do
        assert.is_truthy(msg:find("bad argument #1", 1, true) or msg:find("bad self", 1, true),
          msg)
        assert.matches("pool", msg, 1, true)
      end
    end
  end)
end)
