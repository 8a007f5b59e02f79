-- csp.xchan: channels between threads (API.md "Threads"): the channel methods with Go's
-- semantics, values copied, usable in csp.select next to local channels and timers.
-- luacheck: ignore 431 432 433 (functions run by csp.thread take their own copies, by design)
local csp = require "csp"
local util = require "spec.helpers.util"
local raises, in_go = util.raises, util.in_go

local settles = util.shared_settles

-- A thread echoing what it receives on x back on y until x closes; returns the count.
local function echo(x, y)
  return csp.thread(function(x, y)
    local n = 0
    while true do  -- not range: a nil value would end a for loop
      local v, ok = x:recv()
      if not ok then return n end
      y:send(v)
      n = n + 1
    end
  end, x, y)
end

describe("csp.xchan", function()
  it("has a capacity and a length, unbuffered by default", function()
    local x = csp.xchan()
    assert.equal(0, x:cap())
    assert.equal(0, x:len())
    assert.is_false(x:try_send(1))
    local b = csp.xchan(2)
    assert.equal(2, b:cap())
    assert.is_true(b:try_send("a"))
    assert.equal(1, b:len())
    assert.equal(1, #b)
    assert.matches("^xchan: ", tostring(b))
    assert.matches("makechan: size out of range", raises(csp.xchan, -1))
    assert.matches("makechan: size out of range", raises(csp.xchan, 1 << 40))
    assert.matches("number expected", raises(csp.xchan, "x"))
  end)

  it("round-trips every value it carries through another thread", function()
    local x, y = csp.xchan(), csp.xchan()
    local t = echo(x, y)
    local cyc = { name = "c" }
    cyc.self = cyc
    local shared = { 1 }
    local inner = csp.xchan(1)
    local values = { true, false, 0, -7, math.maxinteger, 1.5, 1.0, -0.0, 1 / 0, "",
      "with\0nul", ("x"):rep(100000), { 1, 2, 3, n = { a = { b = "deep" } }, [10] = 10, [2.5] = "f" } }
    for _, v in ipairs(values) do
      x:send(v)
      local got, ok = y:recv()
      assert.is_true(ok)
      assert.same(v, got)
      assert.equal(math.type(v), math.type(got))
    end
    x:send(nil)
    assert.same({ nil, true }, { y:recv() })
    x:send(cyc)
    local c = y:recv()
    assert.equal(c, c.self)
    assert.equal("c", c.name)
    x:send({ shared, shared, k = shared })
    local s = y:recv()
    assert.equal(s[1], s[2])
    assert.equal(s[1], s.k)
    x:send({ [shared] = shared })
    local k = next((y:recv()))
    assert.same({ 1 }, k)
    x:send(inner)   -- a channel of channels: the same object comes back
    assert.equal(inner, y:recv())
    x:close()
    assert.equal(#values + 5, t:join())
  end)

  it("refuses what cannot cross threads, naming the type, and keeps working", function()
    local x = csp.xchan(4)
    for _, v in ipairs { print, function() end, coroutine.create(print), csp.chan(), io.stdout,
                         setmetatable({}, {}), { f = print } } do
      assert.matches("^xchan: cannot send a", raises(x.send, x, v))
      assert.matches("^xchan: cannot send a", raises(x.try_send, x, v))
    end
    assert.matches("cannot send a function to another thread", raises(x.send, x, print))
    assert.matches("cannot send a csp.chan to another thread", raises(x.send, x, csp.chan()))
    assert.matches("cannot send a table with a metatable", raises(x.send, x, setmetatable({}, {})))
    local deep = {}
    for _ = 1, 300 do deep = { deep } end
    assert.matches("nested too deeply", raises(x.send, x, deep))
    assert.equal(0, x:len())
    x:send(1)
    assert.same({ 1, true }, { x:recv() })
  end)

  it("keeps FIFO order through a buffer between threads", function()
    local x, done = csp.xchan(16), csp.xchan()
    local t = csp.thread(function(x, done)
      local prev = 0
      for v in x:range() do
        if v ~= prev + 1 then return false, v end
        prev = v
      end
      done:send(prev)
      return true
    end, x, done)
    for i = 1, 5000 do x:send(i) end
    x:close()
    assert.equal(5000, done:recv())
    assert.is_true((t:join()))
  end)

  it("try_recv returns v, ok, true; nil, false, false when empty; nil, false, true when closed", function()
    local x = csp.xchan(1)
    assert.same({ nil, false, false }, { x:try_recv() })
    x:send("v")
    assert.same({ "v", true, true }, { x:try_recv() })
    x:close()
    assert.same({ nil, false, true }, { x:try_recv() })
  end)

  it("drains its buffer after close, then gives nil, false", function()
    local x = csp.xchan(2)
    x:send(1)
    x:send(2)
    x:close()
    assert.same({ 1, true }, { x:recv() })
    assert.same({ 2, true }, { x:recv() })
    assert.same({ nil, false }, { x:recv() })
  end)

  it("raises on send on closed channel and close of closed channel", function()
    local x = csp.xchan(1)
    x:close()
    assert.matches("send on closed channel", raises(x.send, x, 1))
    assert.matches("send on closed channel", raises(x.try_send, x, 1))
    assert.matches("close of closed channel", raises(x.close, x))
  end)

  it("close wakes receivers waiting in another thread with nil, false", function()
    local x, ready = csp.xchan(), csp.xchan()
    local t = csp.thread(function(x, ready)
      local csp = require "csp"
      local res, wg = {}, csp.waitgroup()
      for i = 1, 3 do
        wg:add(1)
        csp.go(function() res[i] = { x:recv() }; wg:done() end)
      end
      csp.gosched()
      ready:send(true)
      wg:wait()
      return res
    end, x, ready)
    ready:recv()
    x:close()
    local res = t:join()
    assert.same({ { nil, false }, { nil, false }, { nil, false } }, res)
  end)

  it("close makes senders waiting in another thread raise send on closed channel", function()
    local x, ready = csp.xchan(), csp.xchan()
    local t = csp.thread(function(x, ready)
      local csp = require "csp"
      csp.go(function() ready:send(true) end)
      return pcall(x.send, x, "v")
    end, x, ready)
    ready:recv()
    csp.sleep(0.01)  -- not a synchronisation: the test holds whichever side runs first
    x:close()
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("send on closed channel", err)
  end)

  it("sender and receiver views restrict the direction", function()
    local x = csp.xchan(1)
    local s, r = x:sender(), x:receiver()
    s:send(5)
    assert.same({ 5, true }, { r:recv() })
    assert.matches("recv from send%-only channel", raises(s.recv, s))
    assert.matches("send to receive%-only channel", raises(r.send, r, 1))
    assert.matches("close of receive%-only channel", raises(r.close, r))
    assert.matches("cannot convert", raises(r.sender, r))
    assert.equal(x, s:base())
    assert.matches("^xchan<%-", tostring(s))
    assert.matches("^<%-xchan", tostring(r))
    local t = csp.thread(function(s) s:send("from view") end, s)
    assert.same({ "from view", true }, { x:recv() })
    t:join()
    s:close()
  end)

  it("checks self", function()
    local x = csp.xchan()
    assert.matches("bad argument #1 to '[^']*' %(xchan expected, got number%)", raises(x.send, 1, 2))
    assert.matches("xchan expected, got csp.chan", raises(x.recv, csp.chan()))
  end)

  it("many producers and consumers in several threads lose and duplicate nothing", function()
    local jobs, out = csp.xchan(8), csp.xchan(8)
    local workers = {}
    for i = 1, 2 do
      workers[i] = csp.thread(function(jobs, out)
        local csp = require "csp"
        local wg = csp.waitgroup()
        for _ = 1, 4 do
          wg:add(1)
          csp.go(function() for v in jobs:range() do out:send(v) end wg:done() end)
        end
        wg:wait()
      end, jobs, out)
    end
    local N, seen, count = 4000, {}, 0
    csp.go(function()
      for i = 1, N do jobs:send(i) end
      jobs:close()
    end)
    csp.go(function()
      for i = 1, 2 do workers[i]:join() end
      out:close()
    end)
    for v in out:range() do
      assert.is_nil(seen[v])
      seen[v] = true
      count = count + 1
    end
    assert.equal(N, count)
  end)

  it("holds exactly cap values, for every small cap", function()
    for cap = 1, 5 do
      local x, n = csp.xchan(cap), 0
      while x:try_send(n) do n = n + 1 end
      assert.equal(cap, n)
      assert.equal(cap, x:len())
      for i = 0, cap - 1 do assert.equal(i, (x:recv())) end
      assert.equal(0, #x)
    end
  end)

  it("a small buffer closed while producers and consumers in four threads use it: each value"
    .. " sent is received once, none after a receiver saw the close", function()
    for _, cap in ipairs({ 1, 3 }) do
      local x, got = csp.xchan(cap), csp.atomic.int()
      local producers, consumers = {}, {}
      for p = 1, 2 do
        producers[p] = csp.thread(function(x, p)
          local csp = require "csp"
          local sent = {}
          for i = 1, math.huge do
            local v = p * 10000000 + i
            local ok, err
            if i % 2 == 0 then ok, err = pcall(x.send, x, v)
            else ok, err = pcall(csp.select, { csp.send(x, v) }) end
            if not ok then
              assert(err:find("send on closed channel", 1, true), err)
              return sent
            end
            sent[#sent + 1] = v
          end
        end, x, p)
      end
      for c = 1, 2 do
        consumers[c] = csp.thread(function(x, got)
          local csp = require "csp"
          local seen, wg = {}, csp.waitgroup()
          wg:add(2)
          csp.go(function()
            for v in x:range() do seen[#seen + 1] = v got:add(1) end
            wg:done()
          end)
          csp.go(function()
            local never = csp.chan()
            while true do
              local _, v, ok = csp.select{ csp.recv(x), csp.recv(never) }
              if not ok then break end
              seen[#seen + 1] = v
              got:add(1)
            end
            wg:done()
          end)
          wg:wait()
          local v, ok, ready = x:try_recv()
          assert(v == nil and ok == false and ready == true, "a value after the close")
          return seen
        end, x, got)
      end
      while got:load() < 20000 do csp.sleep(0.001) end
      x:close()
      local sent, seen = {}, {}
      for p = 1, 2 do for _, v in ipairs(producers[p]:join()) do sent[v] = true end end
      for c = 1, 2 do
        for _, v in ipairs(consumers[c]:join()) do
          assert.is_true(sent[v], "received but never sent: " .. v)
          assert.is_nil(seen[v], "received twice: " .. v)
          seen[v] = true
        end
      end
      for v in pairs(sent) do assert.is_true(seen[v], "sent but never received: " .. v) end
    end
  end)

  it("a caught panic while main waits on an xchan leaves no waiter behind", function()
    local x = csp.xchan()
    local ok, err = pcall(function()
      csp.go(function() error("boom") end)
      x:recv()
    end)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.is_false(x:try_send(1))  -- no receiver left
  end)

  it("a panic cancelling main's wait after another thread completed it frees the value and the wait", function()
    -- The thread hands main a value (its send returns: main's wait is won and posted) while a
    -- goroutine of main's runs; that goroutine then panics before the loop takes the post in,
    -- so the cancelled wait is left to the drain (a record the owner gave up, with its value).
    local base = settles(0)
    local ok, err
    do
      local x, parked, sent = csp.xchan(), csp.atomic.int(), csp.atomic.int()
      local t = csp.thread(function(x, parked, sent)
        while parked:load() == 0 do end
        x:send({ "a table: a blob in flight" })
        sent:store(1)
      end, x, parked, sent)
      ok, err = pcall(function()
        csp.go(function()  -- runs once main has parked on x
          parked:store(1)
          while sent:load() == 0 do end
          error("boom")
        end)
        x:recv()
      end)
      t:join()
      assert.is_false(x:try_send(1))  -- no receiver left behind
    end
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.equal(base, settles(base))  -- the drain freed the record: it held x
  end)

  it("frees channels and queued values when the last handle in any state is collected", function()
    local base = settles(0)
    do
      local x = csp.xchan(4)
      x:send(csp.xchan())
      x:send({ csp.syncmap(), csp.atomic.int() })
      local t = csp.thread(function(x) return x:len() end, x)
      assert.equal(2, t:join())
    end
    assert.equal(base, settles(base))
  end)

  it("a thread waiting on an xchan with nothing coming uses no CPU", function()
    -- against a busy baseline over the same span (os.clock is the process's CPU time, every
    -- thread's): a loaded machine or a sanitizer slows both alike; a waiter that spun would
    -- use about as much as the busy thread
    local function cpu_while(body, ...)
      local ready = csp.xchan()
      local t = csp.thread(body, ready, ...)
      ready:recv()
      local c0 = os.clock()
      csp.sleep(0.3)
      return os.clock() - c0, t
    end
    local busy, tb = cpu_while(function(ready)
      local csp = require "csp"
      local stop = csp.now() + 0.3
      ready:send(true)
      while csp.now() < stop do end
    end)
    tb:join()
    local x = csp.xchan()
    local used, t = cpu_while(function(ready, x) ready:send(true) return x:recv() end, x)
    x:send("done")
    assert.equal("done", t:join())
    assert.is_true(used < busy / 4, ("%.3f s of CPU idle, %.3f s busy, in 0.3 s"):format(used, busy))
  end)

  -- Threads spinning on the atomic a until it is set: with them every CPU has an awake
  -- scheduler, so a wake to a sleeping thread may be left for later (port.c's deferred wakes).
  local function fill_cpus(a)
    local ready, ts = csp.xchan(), {}
    for i = 1, csp.nthreads() do
      ts[i] = csp.thread(function(ready, a) ready:send(true) while a:load() == 0 do end end, ready, a)
    end
    for _ = 1, #ts do ready:recv() end
    return ts
  end

  it("a wake left for later arrives although its poster then stalls outside csp", function()
    -- every CPU busy, the poster hands a value to main (asleep in the select: try_send succeeds
    -- only then) and stalls 1 s in a call csp cannot see; the backstop (10 ms) delivers it
    local a, go, x = csp.atomic.int(0), csp.xchan(), csp.xchan()
    local busy = fill_cpus(a)
    local poster = csp.thread(function(go, x)
      go:recv()
      while not x:try_send("value") do end
      os.execute("sleep 1")
      return true
    end, go, x)
    go:send(true)
    local t0 = csp.now()
    local got = csp.select{ csp.recv(x, function(v) return v end),
                            csp.recv(csp.after(5), function() return "timeout" end) }
    local waited = csp.now() - t0
    a:store(1)
    for _, t in ipairs(busy) do t:join() end
    assert.is_true(poster:join())
    assert.equal("value", got)
    assert.is_true(waited < 0.5, ("the value took %.3f s"):format(waited))
  end)

  it("a thread waiting with nothing coming while every CPU is busy wakes at most once or twice", function()
    -- its backstop goes off once, finds nothing and is not armed again until a post comes
    local a, ready, x = csp.atomic.int(0), csp.xchan(), csp.xchan()
    local busy = fill_cpus(a)
    local t = csp.thread(function(ready, x)
      local function switches()
        for line in io.lines("/proc/thread-self/status") do
          local n = line:match("^voluntary_ctxt_switches:%s*(%d+)")
          if n then return tonumber(n) end
        end
      end
      local s0 = switches()
      ready:send(true)
      local v = x:recv()
      return v, switches() - s0
    end, ready, x)
    ready:recv()
    csp.sleep(0.3)   -- the span measured: a backstop armed at every park would go off ~30 times
    x:send("done")
    local v, n = t:join()
    a:store(1)
    for _, b in ipairs(busy) do b:join() end
    assert.equal("done", v)
    assert.is_true(n <= 8, n .. " voluntary context switches while waiting 0.3 s")
  end)

  it("csp.stats counts goroutines waiting on other threads, by reason", function()
    local x, full, gate = csp.xchan(), csp.xchan(1), csp.xchan()
    full:send(0)
    local t = csp.thread(function(gate) gate:recv() end, gate)
    local before = csp.stats()
    local started = csp.chan()
    local function park(f) csp.go(function() started:send(true) f() end) started:recv() end
    park(function() x:recv() end)
    park(function() full:send(1) end)
    park(function() csp.select{ csp.recv(x), csp.recv(csp.chan()) } end)
    park(function() t:join() end)
    local s
    repeat csp.gosched() s = csp.stats() until s.blocked == before.blocked + 4
    assert.equal(1, s.blocked_by["xchan receive"])
    assert.equal(1, s.blocked_by["xchan send"])
    assert.equal(1, s.blocked_by["xchan select"])
    assert.equal(1, s.blocked_by["thread join"])
    x:send(1) x:send(2)   -- the receive and the select, in some order
    full:recv()           -- makes room for the parked sender
    gate:send(true)       -- the thread ends: the joiner wakes
    t:join()
    repeat csp.gosched() s = csp.stats() until s.blocked == before.blocked
    assert.is_nil(s.blocked_by["xchan receive"])
    assert.is_nil(s.blocked_by["thread join"])
  end)

  it("parks only the goroutine: others run while one waits on another thread", function()
    local x = csp.xchan()
    local got
    in_go(function()
      csp.go(function() got = x:recv() end)
      local t = csp.thread(function(x) x:send("late") end, x)
      t:join()
    end)
    assert.equal("late", got)
  end)
end)

describe("csp.select with xchan cases", function()
  it("mixes xchan, local channel and timer cases; exactly one commits each time", function()
    local a, b = csp.xchan(), csp.xchan(4)
    local N = 2000
    local t = csp.thread(function(a, b, N)
      for i = 1, N do
        if i % 2 == 0 then a:send(i) else b:send(i) end
      end
    end, a, b, N)
    local c = csp.chan()
    csp.go(function() for i = 1, 100 do c:send(-i) end end)
    local sum, n, nc = 0, 0, 0
    while n < N or nc < 100 do
      csp.select {
        csp.recv(a, function(v) sum = sum + v; n = n + 1 end),
        csp.recv(b, function(v) sum = sum + v; n = n + 1 end),
        csp.recv(c, function() nc = nc + 1 end),
        csp.recv(csp.after(10), function() error("timeout") end),
      }
    end
    assert.equal(N * (N + 1) // 2, sum)
    t:join()
  end)

  it("takes views: a receiver in a recv case, a sender in a send case; the wrong one raises", function()
    local x = csp.xchan(1)
    local s, r = x:sender(), x:receiver()
    assert.equal(1, (csp.select { csp.send(s, "via view") }))
    assert.same({ 1, "via view", true }, { csp.select { csp.recv(r), csp.recv(csp.chan()) } })
    assert.matches("recv from send%-only channel", raises(function() return csp.select { csp.recv(s) } end))
    assert.matches("send to receive%-only channel", raises(function() return csp.select { csp.send(r, 1) } end))
    local t = csp.thread(function(rv) local c = require "csp"; return c.select { c.recv(rv) } end, r)
    x:send(7)
    assert.same({ 1, 7, true }, { t:join() })
  end)

  it("returns the case index and the received values without handlers", function()
    local x = csp.xchan(1)
    x:send("v")
    assert.same({ 2, "v", true }, { csp.select { csp.recv(csp.chan()), csp.recv(x) } })
    x:close()
    assert.same({ 1, nil, false }, { csp.select { csp.recv(x) } })
  end)

  it("sends on an xchan case, and raises send on closed channel", function()
    local x = csp.xchan(1)
    assert.same({ 1 }, { csp.select { csp.send(x, { k = 1 }) } })
    assert.same({ k = 1 }, x:recv())
    x:close()
    assert.matches("send on closed channel", raises(csp.select, { csp.send(x, 1) }))
    assert.matches("cannot send a function", raises(csp.select, { csp.send(csp.xchan(1), print) }))
  end)

  it("takes default when no xchan case is ready", function()
    local x = csp.xchan()
    assert.same({ 0 }, { csp.select { csp.recv(x), csp.send(x, 1), default = true } })
    assert.equal("d", csp.select { csp.recv(x), default = function() return "d" end })
  end)

  it("chooses uniformly among ready cases of both kinds", function()
    local x, c = csp.xchan(1000), csp.chan(1000)
    local hits = { 0, 0 }
    for _ = 1, 1000 do x:send(1) c:send(1) end
    for _ = 1, 1000 do
      local i = csp.select { csp.recv(x), csp.recv(c) }
      hits[i] = hits[i] + 1
    end
    assert.is_true(hits[1] > 350 and hits[2] > 350, hits[1] .. " " .. hits[2])
  end)

  it("picks only among the ready cases, skipping nil and empty ones between them", function()
    local x, c, empty = csp.xchan(1000), csp.chan(1000), csp.xchan(1)
    local hits = { 0, 0, 0, 0, 0 }
    for _ = 1, 600 do x:send(1) c:send(1) end
    for _ = 1, 600 do
      local i = csp.select { csp.recv(nil), csp.recv(x), csp.recv(empty), csp.recv(c), csp.recv(nil) }
      hits[i] = hits[i] + 1
    end
    assert.same({ 0, 0, 0 }, { hits[1], hits[3], hits[5] })
    assert.is_true(hits[2] > 200 and hits[4] > 200, hits[2] .. " " .. hits[4])
  end)

  it("with ordered = true takes the first ready case, xchan or local", function()
    local x, c, empty = csp.xchan(10), csp.chan(10), csp.xchan(1)
    x:send("x") c:send("c")
    for _ = 1, 20 do  -- the same answer every time, not by chance
      assert.same({ 3, "c", true }, { csp.select { csp.recv(nil), csp.recv(empty), csp.recv(c),
                                                    csp.recv(x), ordered = true } })
      c:send("c")
    end
    assert.same({ 2, "x", true }, { csp.select { csp.recv(empty), csp.recv(x), csp.recv(c),
                                                  ordered = true } })
  end)

  it("a parked select woken from another thread drops its local cases", function()
    local x, c = csp.xchan(), csp.chan()
    local t = csp.thread(function(x) for i = 1, 200 do x:send(i) end end, x)
    local fromx = 0
    for _ = 1, 200 do
      local i = csp.select { csp.recv(x), csp.recv(c) }
      assert.equal(1, i)
      fromx = fromx + 1
      assert.is_false(c:try_send(0))  -- no stale receiver of that select is left on c
    end
    assert.equal(200, fromx)
    t:join()
  end)

  it("a goroutine in another thread selecting on a local channel and an xchan", function()
    local x, out = csp.xchan(), csp.xchan()
    local t = csp.thread(function(x, out)
      local csp = require "csp"
      local c, n = csp.chan(), 0
      csp.go(function() for i = 1, 50 do c:send(i) end end)
      while n < 100 do
        csp.select { csp.recv(x), csp.recv(c) }
        n = n + 1
      end
      out:send(n)
    end, x, out)
    for i = 1, 50 do x:send(i) end
    assert.equal(100, out:recv())
    t:join()
  end)

  it("the same xchan in two cases of one select: one value fires one case", function()
    local x, done = csp.xchan(), csp.xchan()
    local t = csp.thread(function(x, done)
      local csp = require "csp"
      local fired = 0
      for _ = 1, 100 do
        local i = csp.select { csp.recv(x), csp.recv(x) }
        if i == 1 or i == 2 then fired = fired + 1 end
      end
      done:send(fired)
    end, x, done)
    for i = 1, 100 do x:send(i) end
    assert.equal(100, done:recv())
    assert.is_false(x:try_send(0))  -- no waiter of that select is left behind
    t:join()
  end)

  it("a select never matches its own send and receive on one xchan", function()
    local x = csp.xchan()
    assert.same({ 0 }, { csp.select { csp.send(x, 1), csp.recv(x), default = true } })
    local got
    csp.go(function() got = { csp.select { csp.send(x, "s"), csp.recv(x) } } end)
    csp.gosched()
    assert.same({ "s", true }, { x:recv() })  -- its send case was taken by this receive
    csp.gosched()
    assert.same({ 1 }, got)
  end)
end)

