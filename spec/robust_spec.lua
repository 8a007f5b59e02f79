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

  -- collectgarbage("stop") makes LUA_GCISRUNNING answer 0 outside finalizers: main still blocks
  -- there, and a finalizer run by an explicit full collection is still recognised.
  it("with the collector stopped: main blocks, a finalizer still raises", function()
    collectgarbage("stop")
    local ok, err = pcall(function()
      local ch, got = csp.chan(), nil
      csp.go(function() ch:send(7) end)
      assert.equal(7, ch:recv())
      csp.sleep(0.001)
      setmetatable({}, { __gc = function() got = table.pack(pcall(csp.sleep, 0.01)) end })
      collectgarbage()
      collectgarbage()
      assert.is_false(got[1])
      has(got[2], "non-yieldable context (__gc)")
    end)
    collectgarbage("restart")
    assert(ok, err)
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

describe("stacks the core did not size", function()
  local run = require "spec.helpers.run"

  -- A crash must not take busted down with it: each case runs in a child process.
  local function child_ok(code)
    local r = run.run(code)
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    return r.stdout
  end

  it("csp.go and csp.run with many arguments after a collection shrank the stacks", function()
    local out = child_ok([[
      local csp = require "csp"
      local t = {} for i = 1, 300 do t[i] = i end
      local got = csp.chan(10)
      local function count(...) got:send(select("#", ...)) end
      csp.go(count, table.unpack(t))
      collectgarbage()
      csp.sleep(0.01)
      csp.run(count, table.unpack(t, 1, 100))
      csp.run(function()  -- spawned from a goroutine, started from a pooled thread
        collectgarbage()
        csp.go(count, table.unpack(t, 1, 50))
        collectgarbage()
      end)
      for _ = 1, 200 do csp.go(function() end) end  -- fill the thread pool
      csp.run()
      collectgarbage()
      csp.go(count, table.unpack(t, 1, 21))
      collectgarbage()
      csp.run()
      print(got:recv(), got:recv(), got:recv(), (got:recv()))
    ]])
    assert.equal("300\t100\t50\t21\n", out)
  end)

  it("10000 arguments reach a goroutine", function()
    local out = child_ok([[
      local csp = require "csp"
      local t = {} for i = 1, 10000 do t[i] = i end
      local n, last
      csp.run(function(...) n, last = select("#", ...), (select(10000, ...)) end, table.unpack(t))
      print(n, last)
    ]])
    assert.equal("10000\t10000\n", out)
  end)

  it("select with a dozen ready cases and handlers", function()
    local out = child_ok([[
      local csp = require "csp"
      for n = 1, 40 do
        local cases = {}
        for i = 1, n do
          local c = csp.chan(1)
          c:send(i)
          cases[i] = csp.recv(c, function(v, ok) return v, ok, "x", "y", "z" end)
        end
        collectgarbage()
        local v, ok, a, b, c2 = csp.select(cases)
        assert(ok and v >= 1 and v <= n and a == "x" and c2 == "z", n)
      end
      print("ok")
    ]])
    assert.equal("ok\n", out)
  end)
end)

describe("the runtime closed with requests in flight", function()
  local run = require "spec.helpers.run"

  -- lua_close tears the loop down while dials, reads, fs requests and processes are pending: their
  -- callbacks run during the teardown and must neither wake a freed goroutine record nor close a
  -- handle twice (this once aborted in uv_close).
  it("exits cleanly after a panic cut main's dial short", function()
    local r = run.run([[
      local csp = require "csp"
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      for _ = 1, 3 do csp.go(function() csp.fs.readdir("/") end) end
      for _ = 1, 2 do csp.go(function() csp.exec("sleep", { "5" }) end) end
      for _ = 1, 3 do csp.go(function() csp.net.dial("tcp", ln:addr()) end) end
      csp.go(function() local c = csp.net.dial("tcp", ln:addr()); if c then c:read() end end)
      csp.go(function() error("boom") end)
      local ok, err = pcall(csp.net.dial, "tcp", ln:addr())
      print(ok, (tostring(err):match("boom")))
    ]])
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("false\tboom\n", r.stdout)
  end)
end)
