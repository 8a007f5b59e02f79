-- Groups: errgroup semantics (API.md "Cancellation and groups").
local csp = require "csp"

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

describe("group", function()
  it("wait with no goroutines returns nil and cancels gctx (as errgroup's Wait does)", function()
    local g, gctx = csp.group()
    assert.is_nil(gctx:err())
    assert.is_nil(g:wait())
    assert.are.equal("context canceled", gctx:err())
  end)

  it("wait returns after every goroutine has finished, and passes arguments", function()
    local g = csp.group()
    local gate, finished, got = csp.chan(), 0, {}
    for i = 1, 10 do
      g:go(function(a, b, c)
        gate:recv()
        got[a] = { b, c }
        finished = finished + 1
      end, i, nil, "x")
    end
    csp.go(function() gate:close() end) -- runs after the workers park on the gate
    assert.is_nil(g:wait())
    assert.are.equal(10, finished)
    for i = 1, 10 do assert.are.same({ nil, "x" }, got[i]) end
  end)

  it("a returned nil, err is the error; it cancels gctx and wait still waits for all", function()
    local g, gctx = csp.group()
    local stopped = 0
    for _ = 1, 5 do
      g:go(function()
        gctx:done():recv() -- blocks forever unless the failure cancels gctx
        stopped = stopped + 1
      end)
    end
    g:go(function() return nil, "boom" end)
    assert.are.equal("boom", g:wait())
    assert.are.equal(5, stopped)
    assert.are.equal("context canceled", gctx:err())
  end)

  it("a raised error is the error, whatever its value", function()
    local g, gctx = csp.group()
    g:go(function() error("kaput") end)
    assert.matches("kaput", g:wait())
    assert.are.equal("context canceled", gctx:err())
    local value = {}
    local g2 = csp.group()
    g2:go(function() error(value) end)
    assert.are.equal(value, g2:wait())
    for _, raise in ipairs({ function() error(nil) end, function() error() end }) do
      local g3, gctx3 = csp.group() -- still a failure: wait does not return nil (Go: PanicNilError)
      g3:go(raise)
      assert.are.equal("(error object is a nil value)", g3:wait())
      assert.are.equal("context canceled", gctx3:err())
    end
  end)

  it("keeps the first error", function()
    local g, gctx = csp.group()
    g:go(function()
      gctx:done():recv()
      return nil, "second"
    end)
    g:go(function()
      gctx:done():recv()
      error("third")
    end)
    g:go(function() return nil, "first" end)
    assert.are.equal("first", g:wait())
  end)

  it("other results are not errors", function()
    local g, gctx = csp.group()
    g:go(function() return 1 end)
    g:go(function() return false end)
    g:go(function() return nil end)
    g:go(function() return "a", "b" end)
    g:go(function() end)
    assert.is_nil(g:wait())
    assert.are.equal("context canceled", gctx:err()) -- by wait, not by a failure
  end)

  it("derives gctx from the given context", function()
    local parent, cancel = csp.with_cancel(csp.with_value(csp.background(), "k", "v"))
    local g, gctx = csp.group(parent)
    assert.are.equal("v", gctx:value("k"))
    g:go(function() gctx:done():recv() end)
    cancel()
    assert.is_nil(g:wait())
    assert.are.equal("context canceled", gctx:err())
  end)

  it("counts a goroutine that ends with csp.goexit as finished without error", function()
    local g = csp.group()
    g:go(function() csp.goexit() end)
    g:go(function() return 1 end)
    assert.is_nil(g:wait())
  end)

  describe("limit", function()
    it("takes an integral float as the C functions do (2.0), refuses 1.5", function()
      local g = csp.group()
      g:limit(2.0)
      assert.is_true(g:try_go(function() end))
      assert.is_true(g:try_go(function() end))
      assert.is_false(g:try_go(function() end))
      g:wait()
      assert.has_error(function() g:limit(1.5) end)
    end)

    it("runs at most n at once; go blocks beyond n; try_go reports false", function()
      local g = csp.group()
      g:limit(2)
      local running, most, total = 0, 0, 0
      local started, release, launched = csp.chan(), csp.chan(), csp.chan(6)
      csp.go(function()
        for i = 1, 6 do
          g:go(function()
            running = running + 1
            most = math.max(most, running)
            started:send(i)
            release:recv()
            running = running - 1
            total = total + 1
          end)
          launched:send(i)
        end
      end)
      started:recv()
      started:recv()
      -- both slots are taken: the launcher is blocked in its third g:go
      assert.are.equal(2, launched:len())
      assert.is_false(g:try_go(function() end))
      for _ = 3, 6 do
        release:send(true)
        started:recv()
      end
      release:send(true)
      release:send(true)
      assert.is_nil(g:wait())
      assert.are.equal(2, most)
      assert.are.equal(6, total)
      assert.is_true(g:try_go(function() end))
      assert.is_nil(g:wait())
    end)

    it("a negative n removes the limit", function()
      local g = csp.group()
      g:limit(1)
      g:limit(-1)
      local gate = csp.chan()
      for _ = 1, 3 do assert.is_true(g:try_go(function() gate:recv() end)) end
      gate:close()
      assert.is_nil(g:wait())
    end)

    it("cannot change while goroutines are active", function()
      local g = csp.group()
      local gate = csp.chan()
      g:go(function() gate:recv() end)
      assert.matches("errgroup: modify limit while 1 goroutines in the group are still active",
        raises(g.limit, g, 3))
      gate:close()
      g:wait()
      g:limit(3)
    end)
  end)

  it("rejects bad arguments, naming them", function()
    local g = csp.group()
    assert.matches("bad argument #1 to 'group' %(context expected, got table%)", raises(csp.group, {}))
    assert.matches("bad argument #1 to 'go' %(function expected, got nil%)", raises(g.go, g))
    assert.matches("bad argument #1 to 'try_go' %(function expected, got number%)",
      raises(g.try_go, g, 1))
    assert.matches("bad argument #1 to 'limit' %(integer expected, got float%)", raises(g.limit, g, 1.5))
    assert.matches("bad argument #1 to 'limit' %(integer expected, got string%)", raises(g.limit, g, "2"))
    assert.matches("bad argument #1 to 'wait' %(group expected, got nil%)", raises(g.wait))
    -- a callable table is a function here
    g:go(setmetatable({}, { __call = function() return nil, "called" end }))
    assert.are.equal("called", g:wait())
  end)
end)
