-- The collector against parked goroutines, channels and timers: whatever a goroutine can
-- still reach must survive full collections intact, whatever nothing can reach may go
-- without crashing anything. Goroutines that can never be woken are only created in a
-- subprocess, so this file leaves no goroutine behind.
local csp = require "csp"
local util = require "spec.helpers.util"
local run = require "spec.helpers.run"
local in_go = util.in_go

local function full_gc(times)
  for _ = 1, times or 3 do collectgarbage() end
end

-- A value whose contents prove it was not freed or overwritten.
local function payload(i)
  return { i = i, s = ("v%d-"):format(i):rep(8), t = { i * 2 } }
end

local function check(v, i)
  assert(type(v) == "table", "payload is not a table")
  assert(v.i == i and v.s == ("v%d-"):format(i):rep(8) and v.t[1] == i * 2, "payload damaged")
end

-- Moves n payloads through `stages` goroutines, each making a new table and some garbage;
-- every 100 items a stage runs a collection step itself.
local function pipeline(n, stages)
  local first = csp.chan()
  local prev = first
  for s = 1, stages do
    local inp, out = prev, csp.chan(s % 3)
    csp.go(function()
      local k = 0
      for v in inp:range() do
        k = k + 1
        if k % 100 == 0 then collectgarbage("step", 0) end
        local junk = {}
        for j = 1, 10 do junk[j] = { j } end
        assert(#junk == 10)
        out:send({ i = v.i, s = v.s, t = { v.t[1] } })
      end
      out:close()
    end)
    prev = out
  end
  local last = prev
  csp.go(function()
    for i = 1, n do first:send(payload(i)) end
    first:close()
  end)
  local i = 0
  for v in last:range() do
    i = i + 1
    check(v, i)
  end
  assert.equal(n, i)
end

describe("collection while goroutines are parked", function()
  it("receivers parked on channels keep their stacks intact", function()
    local n, chans, res = 200, {}, csp.chan(200)
    for i = 1, n do
      chans[i] = csp.chan()
      csp.go(function(ch)
        local mine = payload(-i)
        local v = ch:recv()
        check(mine, -i)
        check(v, i)
        res:send(i)
      end, chans[i])
    end
    csp.gosched()
    full_gc(5)
    for i = 1, n do
      chans[i]:send(payload(i))
      if i % 50 == 0 then full_gc(1) end
    end
    local sum = 0
    for _ = 1, n do sum = sum + res:recv() end
    assert.equal(n * (n + 1) // 2, sum)
  end)

  it("values of parked senders survive until received", function()
    local n, ch = 200, csp.chan()
    for i = 1, n do csp.go(function() ch:send(payload(i)) end) end
    csp.gosched()
    full_gc(5)
    for i = 1, n do check(ch:recv(), i) end
  end)

  it("values of parked select send cases survive until received", function()
    local n, ch = 100, csp.chan()
    for i = 1, n do
      csp.go(function() csp.select { csp.recv(csp.chan()), csp.send(ch, payload(i)) } end)
    end
    csp.gosched()
    full_gc(5)
    for i = 1, n do check(ch:recv(), i) end
  end)

  it("buffered values held only by the channel survive", function()
    for _, cap in ipairs({ 1000, 70000 }) do
      local ch = csp.chan(cap)
      for i = 1, 1000 do ch:send(payload(i)) end
      full_gc(3)
      for i = 1, 500 do check(ch:recv(), i) end
      for i = 1001, 1500 do ch:send(payload(i)) end
      full_gc(3)
      for i = 501, 1500 do check(ch:recv(), i) end
    end
  end)

  it("channels reachable only from parked goroutines stay alive", function()
    local n, release, res = 100, csp.chan(), csp.chan(100)
    for i = 1, n do
      csp.go(function()
        local private = csp.chan(1)
        local j = csp.select { csp.recv(private), csp.recv(release) }
        private:send(payload(i)) -- still a working channel
        check(private:recv(), i)
        res:send(j)
      end)
    end
    csp.gosched()
    full_gc(5)
    release:close()
    for _ = 1, n do assert.equal(2, res:recv()) end
  end)

  it("a handoff between goroutines over a channel only they hold survives collections", function()
    local res = csp.chan(50)
    for i = 1, 50 do
      csp.go(function()
        local c = csp.chan()
        csp.go(function(ch) res:send({ i, ch:recv() }) end, c)
        csp.sleep(0.01)
        c:send(payload(i))
      end)
    end
    for _ = 1, 10 do
      full_gc(1)
      csp.sleep(0.002)
    end
    for _ = 1, 50 do
      local r = res:recv()
      check(r[2], r[1])
    end
  end)

  it("collections inside goroutines while others are parked", function()
    in_go(function() pipeline(3000, 5) end)
  end)

  it("a pipeline in generational mode", function()
    collectgarbage("generational")
    local ok, err = pcall(pipeline, 3000, 5)
    collectgarbage("incremental")
    assert(ok, err)
  end)

  it("a pipeline with a collector that never pauses", function()
    collectgarbage("incremental", 0, 400)
    local ok, err = pcall(pipeline, 2000, 4)
    collectgarbage("incremental", 200, 100)
    assert(ok, err)
  end)

  it("many finished goroutines are collected", function()
    local before = csp.numgoroutine()
    for _ = 1, 10 do
      for _ = 1, 2000 do csp.go(function() local _ = {} end) end
      csp.gosched()
      full_gc(1)
    end
    assert.equal(before, csp.numgoroutine())
  end)
end)

describe("collection and timers", function()
  it("dropped timers, tickers and after channels do not crash the loop", function()
    local res = csp.chan()
    csp.go(function()
      for _ = 1, 20 do
        csp.after(0.001)
        csp.timer(0.002)
        csp.ticker(0.001)
        csp.tick(0.001)
        csp.sleep(0.001)
      end
      res:send("done")
    end)
    for _ = 1, 10 do
      full_gc(1)
      csp.sleep(0.002)
    end
    assert.equal("done", res:recv())
    full_gc(2)
    csp.sleep(0.01)
  end)

  it("a timer channel in a parked select still fires", function()
    local res = csp.chan(20)
    for i = 1, 20 do
      csp.go(function()
        res:send(csp.select { csp.recv(csp.chan()), csp.recv(csp.after(0.01 + i * 0.001)) })
      end)
    end
    csp.gosched()
    full_gc(3)
    for _ = 1, 20 do assert.equal(2, res:recv()) end
  end)

  it("a stopped, dropped timer leaves the heap consistent", function()
    for _ = 1, 100 do
      local t = csp.timer(0.005)
      t:stop()
      local tk = csp.ticker(0.003)
      tk:reset(0.004)
    end
    full_gc(3)
    local t0 = csp.now()
    csp.sleep(0.02)
    assert.is_true(csp.now() - t0 >= 0.02)
    csp.after(0.001):recv()
  end)

  it("a timer or ticker a finalizer resurrects raises instead of going back on the heap", function()
    local saved = {}
    do
      local t, tk = csp.timer(10), csp.ticker(10)
      -- made after t and tk, so finalized first: it sees them before their channels' __gc
      setmetatable({}, { __gc = function() saved.t, saved.tk = t, tk end })
    end
    full_gc(3)
    assert.is_table(saved.t)
    for _, call in ipairs { function() saved.t:reset(0.001) end, function() saved.tk:reset(0.001) end,
        function() saved.t:stop() end, function() saved.tk:stop() end } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("used after the collector finalized it", err)
    end
    saved = nil
    full_gc(3)
    csp.after(0.002):recv()  -- the heap holds nothing of theirs
  end)
end)

describe("finalizers and channels", function()
  it("a finalizer may use non-blocking channel operations", function()
    local box = csp.chan(100)
    for i = 1, 50 do
      setmetatable({}, { __gc = function() box:try_send(i) end })
    end
    full_gc(3)
    local sum = 0
    while true do
      local v, _, done = box:try_recv()
      if not done then break end
      sum = sum + v
    end
    assert.equal(50 * 51 // 2, sum)
  end)

  it("a finalizer's try_send wakes a parked goroutine", function()
    local wake, res = csp.chan(), csp.chan(1)
    csp.go(function() res:send(wake:recv()) end)
    csp.gosched()
    do setmetatable({}, { __gc = function() wake:try_send("from gc") end }) end
    full_gc(3)
    assert.equal("from gc", res:recv())
  end)
end)

describe("finalizers lua_close runs after the scheduler's own (subprocess)", function()
  it("raise on any csp call instead of touching the torn-down loop and records", function()
    -- set before require "csp", so lua_close finalizes it after the scheduler; a goroutine
    -- still waits on the mutex and another on the channel when it runs
    local r = run.run([[
      local ops
      _G.early = setmetatable({}, { __gc = function()
        for i, op in ipairs(ops) do
          local ok, err = pcall(op)
          print(i, ok or err:match("tore its scheduler down") or err)
        end
      end })
      local csp = require "csp"
      local c, b, m, wg, once = csp.chan(), csp.chan(1), csp.mutex(), csp.waitgroup(), csp.once()
      local t = csp.timer(10)
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      local conn = assert(csp.net.dial("tcp", ln:addr()))
      m:lock()
      csp.go(function() m:lock() end)
      csp.go(function() c:recv() end)
      csp.gosched()
      ops = {
        function() return csp.chan() end, function() return c:try_send(1) end,
        function() return b:try_recv() end, function() return c:close() end,
        function() return tostring(c) end, function() return csp.select({ csp.recv(c) }, true) end,
        function() return csp.go(print) end, function() return csp.after(1) end,
        function() return t:reset(1) end, function() return m:unlock() end,
        function() return wg:add(1) end, function() return once:call(print) end,
        function() return csp.http.get("http://127.0.0.1:1/") end,
        function() return csp.stdout:write("x") end, function() return conn:write("x") end,
        function() return csp.fs.readdir("/") end, function() return csp.run() end,
      }
      _G.keep = { c, b, m, wg, once, t, ln, conn }
    ]], nil, 20)
    assert.equal(0, r.code, r.stderr)
    local lines = {}
    for i = 1, 17 do lines[i] = i .. "\ttore its scheduler down" end
    assert.equal(table.concat(lines, "\n") .. "\n", r.stdout)
  end)
end)

describe("the module loaded twice (subprocess)", function()
  it("each load's state lives until lua_close: the first one's teardown finds its memory", function()
    local r = run.run([[
      local csp = require "csp"
      assert(csp.fs.readfile("/etc/hostname"))
      for k in pairs(package.loaded) do
        if k == "csp" or k:match("^csp%.") then package.loaded[k] = nil end
      end
      csp = nil
      csp = require "csp"
      assert(csp.fs.readfile("/etc/hostname"))
      for _ = 1, 3 do collectgarbage() end
      print("ok")
    ]], nil, 20)
    assert.are.same({ 0, "ok\n", "" }, { r.code, r.stdout, r.stderr })
  end)
end)

describe("goroutines that can never be woken (subprocess)", function()
  it("survive collections, show in the deadlock report, and do not stop the program ending", function()
    local r = run.run([[
      local csp = require "csp"
      for i = 1, 500 do
        csp.go(function() csp.chan():recv() end)
        csp.go(function() csp.chan():send({ i }) end)
        csp.go(function() csp.select { csp.recv(csp.chan()), csp.send(csp.chan(), i) } end)
        csp.go(function() local c = csp.chan(1); c:send(1); c:send({ i }) end)
      end
      csp.gosched()
      for _ = 1, 5 do collectgarbage() end
      assert(csp.numgoroutine() == 2001, "numgoroutine " .. csp.numgoroutine())
      -- the runtime still works
      local a, b = csp.chan(), csp.chan()
      csp.go(function() for v in a:range() do b:send(v) end end)
      for i = 1, 1000 do a:send(i); assert(b:recv() == i) end
      a:close()
      for _ = 1, 3 do collectgarbage() end
      local ok, err = pcall(csp.run)
      assert(not ok and err:find("all goroutines are asleep - deadlock!", 1, true), err)
      assert(err:find("[chan receive]:", 1, true) and err:find("[chan send]:", 1, true)
        and err:find("[select]:", 1, true), "reasons missing")
      collectgarbage()
      print("ok")
    ]], nil, 20)
    assert.equal(0, r.code, r.stderr)
    assert.equal("ok\n", r.stdout)
  end)
end)
