-- csp.thread, t:join, t:id, csp.nthreads: API.md "Threads". Each thread has its own Lua state,
-- scheduler and loop; arguments and results are copied.
-- luacheck: ignore 431 432 433 (functions run by csp.thread take their own copies, by design)
local csp = require "csp"
local util = require "spec.helpers.util"
local run = require "spec.helpers.run"
local raises, in_go = util.raises, util.in_go

local alive, settles = util.shared_alive, util.shared_settles

describe("csp.thread", function()
  it("runs f with copies of the arguments and join returns copies of its results", function()
    local t = csp.thread(function(a, b, s, tab)
      tab.seen = true
      return a + b, s:upper(), tab, nil, 2.5
    end, 2, 3, "hi", { 1, 2, k = "v" })
    local n, s, tab, z, f = t:join()
    assert.equal(5, n)
    assert.equal("HI", s)
    assert.same({ 1, 2, k = "v", seen = true }, tab)
    assert.is_nil(z)
    assert.equal(2.5, f)
    assert.equal(math.type(2.5), math.type(f))
    assert.equal(5, select("#", t:join()))  -- join again: the same results
  end)

  it("gives each thread an increasing integer id", function()
    local a, b = csp.thread(function() end), csp.thread(function() end)
    assert.equal("integer", math.type(a:id()))
    assert.is_true(b:id() > a:id())
    a:join() b:join()
  end)

  it("runs in a fresh Lua state: globals of the caller are not there", function()
    _G.thread_spec_global = 1
    local t = csp.thread(function() return thread_spec_global, type(require) end) -- luacheck: ignore
    local g, r = t:join()
    assert.is_nil(g)
    assert.equal("function", r)
    _G.thread_spec_global = nil
  end)

  it("takes a module name whose module returns the function", function()
    local t = csp.thread("spec.helpers.xworker", 6, 7)
    local tag, v = t:join()
    assert.equal("module", tag)
    assert.equal(42, v)
  end)

  it("raises thread N: msg from join when the thread raised, every time", function()
    local t = csp.thread(function() error("boom", 0) end)
    local msg = raises(t.join, t)
    assert.equal(("thread %d: boom"):format(t:id()), msg)
    assert.equal(msg, raises(t.join, t))
    local t2 = csp.thread(function() error({}) end)
    assert.matches("^thread %d+: %(error object is a table value%)", raises(t2.join, t2))
    local t3 = csp.thread("no.such.module.anywhere")
    assert.matches("^thread %d+: .*no.such.module.anywhere", raises(t3.join, t3))
    local t4 = csp.thread("string")
    assert.matches("did not return a function", raises(t4.join, t4))
  end)

  it("raises when results cannot be copied back", function()
    local t = csp.thread(function() return print end)
    assert.matches("^thread %d+: xchan: cannot send a function to another thread", raises(t.join, t))
  end)

  it("checks its arguments", function()
    assert.matches("bad argument #1 to '[%w.]*thread' %(function or module name expected, got no value%)",
      raises(csp.thread))
    assert.matches("bad argument #1 to '[%w.]*thread' %(function or module name expected, got number%)",
      raises(csp.thread, 1))
    assert.matches("bad argument #1 to '[%w.]*thread' %(Lua function expected", raises(csp.thread, print))
    local up = 1
    assert.matches("bad argument #1 to '[%w.]*thread' %(function has upvalues",
      raises(csp.thread, function() return up end))
    assert.matches("xchan: cannot send a function to another thread",
      raises(csp.thread, function() end, print))
    assert.matches("xchan: cannot send a coroutine to another thread",
      raises(csp.thread, function() end, coroutine.create(print)))
    assert.matches("bad argument #1 to '[^']*' %(thread expected", raises(csp.thread(function() end).join, 1))
    assert.matches("bad argument #1 to '[^']*' %(thread expected", raises(csp.thread(function() end).id, {}))
  end)

  it("join blocks only the calling goroutine", function()
    local x = csp.xchan()
    local t = csp.thread(function(x) return x:recv() * 2 end, x)
    local ticks = 0
    csp.go(function()
      for i = 1, 3 do ticks = ticks + 1; csp.gosched() end
      x:send(21)
    end)
    assert.equal(42, t:join())
    assert.equal(3, ticks)
  end)

  it("joins from a goroutine", function()
    local t = csp.thread(function() return "r" end)
    local r
    in_go(function() r = t:join() end)
    assert.equal("r", r)
  end)

  it("a thread cannot join itself", function()
    local x = csp.xchan(1)
    local t = csp.thread(function(x)
      local me = x:recv()
      return pcall(me.join, me)
    end, x)
    x:send(t)
    local ok, err = t:join()
    assert.is_false(ok)
    assert.matches("cannot join itself", err)
  end)

  it("threads run goroutines, timers and select of their own", function()
    local t = csp.thread(function()
      local csp = require "csp"
      local c, n = csp.chan(), 0
      for i = 1, 10 do csp.go(function() csp.sleep(0.001); c:send(i) end) end
      for _ = 1, 10 do n = n + c:recv() end
      local r = csp.select { csp.recv(csp.after(0.001)) }
      return n, r
    end)
    local n, r = t:join()
    assert.equal(55, n)
    assert.equal(1, r)
  end)

  it("a handle is == to itself when it comes back through a channel", function()
    local x = csp.xchan(1)
    local t = csp.thread(function(x) local h = x:recv(); x:send(h); return h:id() end, x)
    x:send(t)
    local id = t:join()
    assert.equal(t:id(), id)
    assert.equal(t, x:recv())
  end)

  it("frees the thread record when the last handle in any state is collected", function()
    local base = settles(0)  -- what earlier tests left is garbage, ended threads included
    do
      local t = csp.thread(function() return 1 end)
      t:join()
      assert.is_true(alive() > base)
    end
    assert.equal(base, settles(base))
  end)

  it("csp.nthreads is the number of CPUs", function()
    local n = csp.nthreads()
    assert.equal("integer", math.type(n))
    assert.is_true(n >= 1)
  end)

  it("the process ends when main ends, threads blocked or not #subprocess", function()
    local r = run.run([[
      local csp = require "csp"
      local x = csp.xchan()
      csp.thread(function(x) x:recv() end, x)
      csp.thread(function() while true do end end)
      print("main done")
    ]])
    assert.equal(0, r.code)
    assert.equal("main done\n", r.stdout)
  end)

  it("main blocked on an xchan nothing else can reach is a deadlock #subprocess", function()
    local r = run.run([[
      local csp = require "csp"
      local t = csp.thread(function() return 1 end)
      t:join()
      csp.xchan():recv()
    ]])
    assert.is_not.equal(0, r.code)
    assert.matches("all goroutines are asleep %- deadlock!", r.stderr)
  end)
end)

describe("deadlock across threads", function()
  it("threads waiting on each other while main joins one: main reports it, with every thread's goroutines"
    .. " #subprocess", function()
    local r = run.run([[
      local csp = require "csp"
      local a, b = csp.xchan(), csp.xchan()
      local t1 = csp.thread(function(a, b) a:recv() b:send(1) end, a, b)
      csp.thread(function(a, b) b:recv() a:send(1) end, a, b)
      local ok, err = pcall(t1.join, t1)
      local _, sections = err:gsub("\n\nthread %d+:\ngoroutine 1 %[xchan receive%]:", "")
      print(ok, err:match("^[^\n]*"), sections)
      -- not deadlocks: a thread sleeping then sending, a thread computing then sending
      local c = csp.xchan()
      csp.thread(function(c) require("csp").sleep(0.1) c:send("late") end, c)
      print(c:recv())
      csp.thread(function(c) local x = 0 for i = 1, 1e6 do x = x + i end c:send(x) end, c)
      print(c:recv())
    ]])
    assert.equal(0, r.code, r.stderr)
    assert.equal("false\tfatal error: all goroutines are asleep - deadlock!\t2\nlate\ttrue\n500000500000\ttrue\n",
      r.stdout)
  end)

  it("main deadlocked alone: the report lists every thread, waiting, sleeping, running or busy"
    .. " #subprocess", function()
    local r = run.run([[
      local csp = require "csp"
      local x, y, ready = csp.xchan(), csp.xchan(), csp.xchan(3)
      -- each thread says it is ready once its goroutine has run (and so parked): no sleep-and-hope
      csp.thread(function(x, ready)  -- thread 1: a goroutine waits on an xchan, main sleeps
        local csp = require "csp"
        csp.go(function() x:recv() end)
        csp.sleep(0.005)
        ready:send(1)
        while true do csp.sleep(0.005) end
      end, x, ready)
      csp.thread(function(y, ready)  -- thread 2: yields in a loop while a goroutine waits to send
        local csp = require "csp"
        csp.go(function() y:send(1) end)
        csp.gosched()
        ready:send(2)
        while true do csp.gosched() end
      end, y, ready)
      csp.thread(function(ready)  -- thread 3: never reaches its scheduler again
        ready:send(3)
        while true do end
      end, ready)
      for _ = 1, 3 do ready:recv() end
      local ok, err = pcall(function() csp.chan():recv() end)
      print(ok, (err:gsub("\t[^\n]*\n", "")))  -- without the traceback lines
    ]])
    assert.equal(0, r.code, r.stderr)
    local out = r.stdout
    assert.matches("^false\tfatal error: all goroutines are asleep %- deadlock!\n\ngoroutine 1 %[chan receive%]:", out)
    local t1, t2, t3 = out:find("\nthread 1:\n", 1, true), out:find("\nthread 2:\n", 1, true),
      out:find("\nthread 3:\n", 1, true)
    assert.is_truthy(t1 and t2 and t3 and t1 < t2 and t2 < t3, out)
    local s1, s2, s3 = out:sub(t1, t2), out:sub(t2, t3), out:sub(t3)
    assert.matches("goroutine 1 %[sleep%]:", s1)
    assert.matches("goroutine 2 %[xchan receive%]:", s1)
    assert.matches("goroutine 1 %[running%]:", s2)
    assert.matches("goroutine 2 %[xchan send%]:", s2)
    assert.matches("busy outside the scheduler: its goroutines could not be listed", s3)
  end)

  it("a thread left waiting on one that ended is reported once nothing else runs #subprocess", function()
    local r = run.run([[
      local csp = require "csp"
      local x = csp.xchan()
      local t = csp.thread(function(x) return x:recv() end, x)
      csp.thread(function() end):join()
      t:join()
    ]])
    assert.is_not.equal(0, r.code)
    assert.matches("all goroutines are asleep %- deadlock!", r.stderr)
  end)
end)

describe("csp.parallel", function()
  it("n threads drain jobs and send f(job) on results, then close results", function()
    local jobs, results = csp.xchan(8), csp.xchan(8)
    csp.go(function()
      for i = 1, 500 do jobs:send(i) end
      jobs:close()
    end)
    csp.go(csp.parallel, 2, function(x) return x * x end, jobs, results)
    local sum, n = 0, 0
    for v in results:range() do sum = sum + v; n = n + 1 end
    assert.equal(500, n)
    assert.equal(500 * 501 * 1001 // 6, sum)
  end)

  it("without results, blocks until every job is done", function()
    local jobs, count = csp.xchan(100), csp.atomic.int()
    for i = 1, 100 do jobs:send({ count, i }) end
    jobs:close()
    csp.parallel(nil, function(job) job[1]:add(job[2]) end, jobs)
    assert.equal(5050, count:load())
  end)

  it("raises the first worker's error after the others end", function()
    local jobs = csp.xchan(4)
    for i = 1, 4 do jobs:send(i) end
    jobs:close()
    assert.matches("^thread %d+: .*bad job 3",
      raises(csp.parallel, 2, function(x) if x == 3 then error("bad job " .. x) end end, jobs))
  end)

  it("CSP_THREADS caps maxthreads, which caps n #subprocess", function()
    local r = run.run([[
      local csp = require "csp"
      print(csp.maxthreads())
      local jobs, results = csp.xchan(10), csp.xchan(10)
      for i = 1, 10 do jobs:send(i) end
      jobs:close()
      csp.parallel(64, function() return require("csp").goid() end, jobs, results)
      local n = 0
      for _ in results:range() do n = n + 1 end
      print(n, csp.stats().shared_alive >= 2)
    ]], { CSP_THREADS = "1" })
    assert.equal(0, r.code, r.stderr)
    assert.equal("1\n10\ttrue\n", r.stdout)
  end)

  it("checks its arguments", function()
    local up = 1
    assert.matches("bad argument #1 to 'parallel' %(integer expected, got string", raises(csp.parallel, "x"))
    assert.matches("bad argument #2 to 'parallel' %(function expected", raises(csp.parallel, 1, 2))
    assert.matches("bad argument #2 to 'parallel' %(function has upvalues",
      raises(csp.parallel, 1, function() return up end, csp.xchan()))
    assert.matches("bad argument #3 to 'parallel' %(xchan expected, got table",
      raises(csp.parallel, 1, function() end, {}))
    assert.matches("bad argument #4 to 'parallel' %(xchan expected, got csp.chan",
      raises(csp.parallel, 1, function() end, csp.xchan(), csp.chan()))
  end)
end)
