-- Wrong programs get Lua errors, never a crash: goroutine threads resumed or closed behind the
-- scheduler's back, blocking in finalizers, odd error objects, a __close that raises.
local csp = require "csp"
local util = require "spec.helpers.util"
local raises = util.raises

local function has(s, sub)
  assert.is_truthy(s:find(sub, 1, true), ("expected %q in:\n%s"):format(sub, s))
end

describe("a goroutine's thread used behind the scheduler's back", function()
  it("coroutine.resume of a parked goroutine raises in it, and it is let go", function()
    local ch, co = csp.chan(), nil
    local before = csp.numgoroutine()
    csp.go(function()
      co = coroutine.running()
      ch:recv()
    end)
    csp.gosched()
    local ok, err = coroutine.resume(co, "forged", "values")
    assert.is_false(ok)
    has(err, "goroutine resumed outside the scheduler")
    csp.run()  -- its record is let go once nothing can still be in flight for it
    assert.equal(before, csp.numgoroutine())
    -- the channel no longer has it as a receiver
    assert.is_false(ch:try_send(1))
  end)

  it("coroutine.close of a parked goroutine is reaped before a deadlock is declared", function()
    local ch, co = csp.chan(), nil
    csp.go(function()
      co = coroutine.running()
      ch:recv()
    end)
    csp.gosched()
    assert.is_true(coroutine.close(co))
    csp.run()  -- would report a deadlock if the closed goroutine still counted
    assert.equal(1, csp.numgoroutine())
  end)

  it("a closed goroutine's channel can be collected while the record is still queued", function()
    local co
    do
      local ch = csp.chan()
      csp.go(function()
        co = coroutine.running()
        csp.select { csp.recv(ch), csp.recv(csp.chan()) }
      end)
      csp.gosched()
    end
    coroutine.close(co)
    collectgarbage()
    collectgarbage()
    csp.run()
    assert.equal(1, csp.numgoroutine())
  end)
end)

describe("blocking where it cannot be done", function()
  it("raises inside a finalizer run by the collector", function()
    local got
    setmetatable({}, { __gc = function() got = table.pack(pcall(csp.sleep, 0.01)) end })
    collectgarbage()
    collectgarbage()
    assert.is_false(got[1])
    has(got[2], "non-yieldable")
  end)

  it("raises inside a plain coroutine running in a goroutine", function()
    local msg
    csp.run(function()
      local ok, err = pcall(coroutine.wrap(function() csp.sleep(0.001) end))
      assert.is_false(ok)
      msg = err
    end)
    has(msg, "plain coroutine")
  end)
end)

describe("panics with odd error objects", function()
  it("uses __tostring, and survives a __tostring that raises", function()
    csp.go(error, setmetatable({}, { __tostring = function() return "custom object" end }))
    has(raises(csp.gosched), "custom object")
    csp.go(error, setmetatable({}, { __tostring = function() error("no") end }))
    has(raises(csp.gosched), "cannot be converted to a string")
    csp.go(error, nil)
    has(raises(csp.gosched), "goroutine ")
  end)

  it("reports a __close that raises after the panic, and the runtime goes on", function()
    csp.go(function()
      local _ <close> = setmetatable({}, { __close = function() error("close failed") end })
      error("first")
    end)
    local msg = raises(csp.gosched)
    has(msg, "first")
    has(msg, "close failed")
    local ch = csp.chan(1)
    csp.go(function() ch:send("alive") end)
    assert.equal("alive", (ch:recv()))
  end)
end)

describe("objects of the wrong type", function()
  it("channel methods refuse other userdata and tables", function()
    local send, recv = csp.chan().send, csp.chan().recv
    for _, bad in ipairs({ csp.mutex(), csp.waitgroup(), io.stdout, {}, 1, "x", csp.recv(nil) }) do
      has(raises(send, bad, 1), "channel expected")
      has(raises(recv, bad), "channel expected")
    end
  end)

  it("select refuses what is not a case", function()
    has(raises(csp.select, { csp.chan() }),
      "select' (case #1: csp.recv or csp.send expected, got csp.chan)")
    has(raises(csp.select, { csp.recv(csp.chan()), 42 }),
      "select' (case #2: csp.recv or csp.send expected, got number)")
  end)

  it("__gc of a channel called by hand on another value does nothing", function()
    local ok = pcall(function()
      local mt = debug.getmetatable(csp.chan())
      mt.__gc(42)
      mt.__gc(csp.mutex())
    end)
    assert.is_true(ok)
  end)
end)
