-- The race detector (CSP_RACE, require "csp.race"): issue 13 part 1. Every program runs in its
-- own lua5.4 process (the detector is per process and decides the exit status), with the
-- preamble below. Racy programs are reported on every run, whatever the interleaving; correct
-- ones, one per kind of happens-before edge, never are.
local run = require("spec.helpers.run").run

local PRE = [[
local csp = require "csp"
local race = csp.race
local wg, mu = csp.waitgroup(), csp.mutex()
local cv = csp.cond(mu)
]]

local function race(code, env)
  local r = run(PRE .. code, env or { CSP_RACE = "1" })
  local _, n = r.stderr:gsub("WARNING: DATA RACE", "")
  r.races = n
  return r
end

-- A race: exit 66, n reports (1 by default), the summary line.
local function racy(code, n)
  local r = race(code)
  assert.are.equal(n or 1, r.races, r.stderr)
  assert.are.equal(66, r.code, r.stderr)
  assert.matches("Found " .. (n or 1) .. " data race%(s%)\n$", r.stderr)
  return r
end

-- No race: exit 0, stderr empty.
local function clean(code)
  local r = race(code)
  assert.are.equal("", r.stderr)
  assert.are.equal(0, r.code)
  return r
end

-- A program in which main polls channel CH with try_recv (yielding between tries) until it gets
-- a value or sees it closed, after a goroutine did WRITE, then reads data.
local function polled(ch, write)
  return ([[
    local d = %s
    csp.go(function() data = 1; %s end)
    while true do
      local _, _, got = d:try_recv()
      if got then break end
      csp.gosched()
    end
    print(data)
  ]]):format(ch, write)
end

describe("race detector: races are reported", function()
  it("write/write on a global from two goroutines", function()
    racy "x = 0; for i = 1, 2 do wg:go(function() x = i end) end; wg:wait()"
  end)

  it("read/write: sleeping is not synchronisation", function()
    racy "wg:go(function() x = 1 end); csp.sleep(0.01); print(x); wg:wait()"
  end)

  it("the bank: read, block, write (a lost update)", function()
    racy [[
      balance = 100
      local function withdraw(n)
        local b = balance
        csp.sleep(0.001)
        balance = b - n
      end
      wg:go(withdraw, 30); wg:go(withdraw, 50); wg:wait()
    ]]
  end)

  it("a race whose bad interleaving never happens is still one, reported once", function()
    local r = racy "n = 0; for i = 1, 10 do wg:go(function() n = n + 1 end) end; wg:wait(); print(n)"
    assert.are.equal("10\n", r.stdout)
  end)

  it("a write after a send races with the receiver's read (watched table)", function()
    racy [[
      local t = race.watch({ v = 0 }, "t")
      local c = csp.chan()
      csp.go(function() print(c:recv().v) end)
      t.v = 1; c:send(t); t.v = 2
      csp.sleep(0.01)
    ]]
  end)

  it("a buffered receive does not order the send before it", function()
    racy [[
      local c = csp.chan(1)
      csp.go(function() data = 42; c:recv() end)
      c:send(true); csp.sleep(0.01); print(data)
    ]]
  end)

  it("a channel of capacity 2 as a semaphore lets two holders race", function()
    racy [[
      local sem = csp.chan(2)
      balance = 0
      for i = 1, 5 do
        wg:go(function()
          sem:send(true)
          local b = balance; csp.sleep(0.001); balance = b + 1
          sem:recv()
        end)
      end
      wg:wait()
    ]]
  end)

  it("two variables, two reports (a flag polled with gosched)", function()
    racy([[
      csp.go(function() data = 1; flag = true end)
      while not flag do csp.gosched() end
      print(data)
    ]], 2)
  end)

  it("cond: signal without the lock gives no edge", function()
    racy [[
      csp.go(function() csp.sleep(0.01); ready = true; cv:signal() end)
      mu:lock(); while not ready do cv:wait() end; mu:unlock()
    ]]
  end)

  it("cond: no Signal to Wait edge for data written outside the lock (as Go)", function()
    racy [[
      csp.go(function() mu:lock(); ready = true; mu:unlock(); data = 42; cv:signal() end)
      mu:lock(); while not ready do cv:wait() end; mu:unlock()
      print(data)
    ]]
  end)

  it("write/write on a watched table's field", function()
    local r = racy [[
      local t = race.watch({})
      for i = 1, 2 do wg:go(function() t.x = i end) end
      wg:wait()
    ]]
    assert.matches("Write at field 'x' of table: 0x%x+ by goroutine 3:", r.stderr)
    assert.matches("Previous write at field 'x' of table: 0x%x+ by goroutine 2:", r.stderr)
  end)

  it("read/write on a watched table's fields", function()
    racy [[
      local acc = race.watch({}, "acc")
      acc.n = 0
      wg:go(function() acc.n = acc.n + 1 end)
      print(acc.n)
      wg:wait()
    ]]
  end)

  it("names a write by the function it is in, even on a line the main chunk runs too", function()
    local r = racy [[
      g = 0; csp.go(function() g = 1 end)
      csp.sleep(0.01)
      g = 2
    ]]
    assert.matches("Previous write at g by goroutine 2:\n  [^\n]-:5 in function <[^\n]-:5>\n", r.stderr)
    assert.matches("Goroutine 2 created at:\n  [^\n]-:5 in main chunk\n", r.stderr)
  end)

  it("a goroutine's end does not order it before main without a wait", function()
    racy [[
      local done = csp.chan()
      csp.go(function() x = 1 end)
      csp.sleep(0.01)
      x = 2
    ]]
  end)
end)

describe("race detector: synchronised programs are clean", function()
  it("unbuffered channel: send before the receive completes", function()
    clean "local c = csp.chan(); csp.go(function() data = 42; c:send(true) end); c:recv(); print(data)"
  end)

  it("unbuffered channel: the receive before the send completes", function()
    clean "local c = csp.chan(); csp.go(function() data = 42; c:recv() end); c:send(true); print(data)"
  end)

  it("buffered channel: send before receive", function()
    clean "local c = csp.chan(1); csp.go(function() data = 42; c:send(true) end); c:recv(); print(data)"
  end)

  it("buffered channel: receive k before send k + cap completes (a semaphore of 1)", function()
    clean [[
      local sem = csp.chan(1)
      balance = 0
      for i = 1, 5 do
        wg:go(function()
          sem:send(true)
          local b = balance; csp.sleep(0.001); balance = b + 1
          sem:recv()
        end)
      end
      wg:wait(); print(balance)
    ]]
  end)

  -- x is written between receives 1 and 2: send 4 (= 2 + cap) completes after it, send 3 may not.
  local CAP = [[
    local c = csp.chan(2)
    csp.go(function()
      for i = 1, 6 do
        c:send(i)
        if i == AT then print(x) end
      end
      c:close()
    end)
    local n = 0
    for v in c:range() do
      n = n + 1
      if n == 1 then x = "seen" end
      if n % 2 == 0 then csp.gosched() end
    end
  ]]

  it("buffered channel: receive k before send k + cap completes (handoff and full ring)", function()
    clean((CAP:gsub("AT", "4")))
  end)

  it("buffered channel: ... but not before send k + cap - 1", function()
    racy((CAP:gsub("AT", "3")))
  end)

  it("close before a receive that sees it", function()
    clean "local d = csp.chan(); csp.go(function() data = 1; d:close() end); d:recv(); print(data)"
  end)

  it("close before a receive that finds the channel already closed", function()
    clean(polled("csp.chan()", "d:close()"))
  end)

  it("close wakes a parked receiver with the closer's clock", function()
    clean [[
      local d = csp.chan()
      csp.go(function() csp.sleep(0.005); data = 1; d:close() end)
      local _, ok = d:recv(); assert(not ok); print(data)
    ]]
  end)

  it("mutex", function()
    clean [[
      balance = 100
      local function withdraw(n)
        mu:lock(); local b = balance
        csp.sleep(0.001)
        balance = b - n; mu:unlock()
      end
      wg:go(withdraw, 30); wg:go(withdraw, 50); wg:wait(); print(balance)
    ]]
  end)

  it("mutex trylock", function()
    clean [[
      for i = 1, 3 do
        wg:go(function()
          while not mu:trylock() do csp.gosched() end
          x = (x or 0) + 1; csp.gosched(); x = x + 1
          mu:unlock()
        end)
      end
      wg:wait()
    ]]
  end)

  it("rwmutex: readers share, the writer excludes", function()
    clean [[
      local rw = csp.rwmutex()
      data = 0
      wg:go(function() rw:rlock(); local d = data; rw:runlock() end)
      wg:go(function() rw:lock(); data = 5; rw:unlock() end) -- free: Lock after RUnlock
      wg:go(function() rw:rlock(); local d = data; rw:runlock() end) -- free: RLock after Unlock
      for i = 1, 3 do
        wg:go(function() rw:rlock(); local d = data; csp.sleep(0.001); rw:runlock() end)
      end
      wg:go(function() rw:lock(); data = data + 1; rw:unlock() end)
      for i = 1, 3 do
        wg:go(function() rw:rlock(); local d = data; rw:runlock() end)
      end
      wg:wait(); print(data)
    ]]
  end)

  it("waitgroup: done before wait returns, fast path and parked", function()
    clean [[
      local w2 = csp.waitgroup()
      w2:add(1); csp.go(function() y = 1; w2:done() end); csp.gosched(); csp.gosched()
      w2:wait(); print(y)
      wg:go(function() csp.sleep(0.001); x = 1 end); wg:wait(); print(x)
    ]]
  end)

  it("goroutines filling distinct keys of a watched table", function()
    clean "local r = race.watch({}); for i = 1, 4 do wg:go(function() r[i] = i * i end) end; wg:wait(); print(r[4])"
  end)

  it("once: f before every call returns (parked waiters and the done path)", function()
    clean [[
      local once = csp.once()
      for i = 1, 3 do
        wg:go(function()
          once:call(function() csp.sleep(0.001); config = { port = 1 } end)
          local p = config.port
        end)
      end
      wg:wait()
      once:call(function() end); print(config.port)
      local o2 = csp.once()
      csp.go(function() o2:call(function() y = 1 end) end)
      csp.go(function() o2:call(function() end); print(y) end) -- already done: no parking
      csp.sleep(0.01)
    ]]
  end)

  it("semaphore: release before acquire", function()
    clean [[
      local s = csp.semaphore(1)
      balance = 0
      for i = 1, 4 do
        wg:go(function()
          s:acquire(); local b = balance; csp.sleep(0.001); balance = b + 1; s:release()
        end)
      end
      wg:wait(); print(balance)
      -- without parking: a free acquire after a release
      wg:go(function() s:acquire(); balance = balance + 1; s:release() end)
      wg:go(function() s:acquire(); balance = balance + 1; s:release() end)
      wg:go(function() assert(s:try_acquire()); balance = balance + 1; s:release() end)
      wg:wait()
    ]]
  end)

  it("cond with the data under the lock", function()
    clean [[
      csp.go(function() mu:lock(); data = 42; ready = true; cv:signal(); mu:unlock() end)
      mu:lock(); while not ready do cv:wait() end; mu:unlock()
      print(data)
    ]]
  end)

  it("timer: reset before the channel's delivery", function()
    clean [[
      local tm = csp.timer(3600)
      local d = csp.chan()
      csp.go(function() tm.c:recv(); print(data); d:send(1) end)
      data = 1; tm:reset(0.01); d:recv()
    ]]
  end)

  it("after: creation before the tick, received when pending", function()
    clean [[
      data = 1
      local c = csp.after(0.001)
      csp.go(function() csp.sleep(0.01); c:recv(); print(data) end)
    ]]
  end)

  it("context: cancel before done() is seen, and before err() is seen", function()
    clean [[
      local ctx, cancel = csp.with_cancel(csp.background())
      csp.go(function() result = 1; cancel() end)
      ctx:done():recv(); print(result)
      local ctx2, cancel2 = csp.with_cancel(csp.background())
      csp.go(function() result2 = 1; cancel2() end)
      while not ctx2:err() do csp.gosched() end
      print(result2)
    ]]
  end)

  it("context: with_timeout's caller before the deadline fires", function()
    clean [[
      data = 1
      local ctx = csp.with_timeout(csp.background(), 0.005)
      csp.go(function() ctx:done():recv(); print(data) end)
    ]]
  end)

  it("memo: f's writes before every get that returns its result (a waiter, a hit)", function()
    clean [[
      local m = csp.memo(function(key) result = key; csp.gosched(); return key end)
      wg:go(function() m:get(1) end)
      wg:go(function() m:get(1); print(result) end) -- waits for the running call
      wg:wait()
      local m2 = csp.memo(function(key) result2 = key; return key end)
      wg:go(function() m2:get(1) end)
      csp.gosched() -- the call ends (gosched orders nothing)
      wg:go(function() m2:get(1); print(result2) end) -- a hit
      wg:wait()
    ]]
  end)

  it("pool: what was done to an object before put, before what is done after the get", function()
    clean [[
      local p = csp.pool(function() return {} end)
      local obj = p:get()
      wg:go(function() obj.x = 1; shared = 1; p:put(obj) end)
      wg:go(function() local o = p:get(); assert(o == obj); print(o.x, shared) end)
      wg:wait()
    ]]
    racy [[
      local p = csp.pool(function() return {} end)
      wg:go(function() csp.gosched(); shared = 1; p:put({}) end)
      wg:go(function() p:get(); print(shared) end) -- a new object: no order with the put
      wg:wait()
    ]]
  end)

  it("go: the parent's writes before the child's start; csp.run after every goroutine", function()
    clean [[
      data = 1
      csp.run(function()
        csp.go(function() data = data + 1 end)
      end)
      print(data)
    ]]
  end)

  it("select: the partner completes a parked select", function()
    clean [[
      local c1, c2 = csp.chan(), csp.chan()
      csp.go(function() data = 7; c2:send(true) end)
      csp.select { csp.recv(c1), csp.recv(c2) }
      print(data)
    ]]
  end)

  it("race.release / race.acquire annotate a custom handoff", function()
    clean [[
      local box = {}
      csp.go(function() data = 1; race.release(box); ready = true end)
      csp.sleep(0.01)
      race.acquire(box)
      print(data)
    ]]
  end)
end)

describe("race detector: xchans synchronise goroutines of one thread", function()
  it("unbuffered: send before the receive completes (receiver parked, sender parked)", function()
    clean "local x = csp.xchan(); csp.go(function() data = 42; x:send(true) end); x:recv(); print(data)"
    clean [[
      local x = csp.xchan()
      csp.go(function() data = 42; x:send(true) end)
      csp.gosched()
      x:recv(); print(data)
    ]]
  end)

  it("unbuffered: the receive before the send completes", function()
    clean "local x = csp.xchan(); csp.go(function() data = 42; x:recv() end); x:send(true); print(data)"
  end)

  it("buffered: send before receive, from the ring and through range", function()
    clean "local x = csp.xchan(1); csp.go(function() data = 42; x:send(true) end); x:recv(); print(data)"
    clean [[
      local x = csp.xchan(4)
      csp.go(function() for i = 1, 3 do _G["d" .. i] = i; x:send(i) end; x:close() end)
      for v in x:range() do assert(_G["d" .. v] == v) end
    ]]
  end)

  it("buffered: receive k before send k + cap completes (a semaphore of 1)", function()
    clean [[
      local sem = csp.xchan(1)
      balance = 0
      for i = 1, 5 do
        wg:go(function()
          sem:send(true)
          local b = balance; csp.gosched(); balance = b + 1
          sem:recv()
        end)
      end
      wg:wait(); print(balance)
    ]]
  end)

  it("close before a receive that sees it (parked, or finding it closed)", function()
    clean "local x = csp.xchan(); csp.go(function() data = 1; x:close() end); x:recv(); print(data)"
    clean(polled("csp.xchan()", "d:close()"))
  end)

  it("try_send before try_recv", function()
    clean(polled("csp.xchan(1)", "assert(d:try_send(true))"))
  end)

  it("select: a ready case, a parked select's partner, a send case", function()
    clean [[
      local x = csp.xchan(1)
      csp.go(function() data = 1; x:send(true) end)
      csp.select { csp.recv(x) }
      print(data)
    ]]
    clean [[
      local x, c = csp.xchan(), csp.chan()
      csp.go(function() data = 7; x:send(true) end)
      csp.select { csp.recv(c), csp.recv(x) }
      print(data)
    ]]
    clean [[
      local x = csp.xchan()
      csp.go(function() data = 7; x:recv() end)
      csp.select { csp.send(x, 1) }
      print(data)
    ]]
  end)

  it("a sender on another thread: the receive completes, nothing is invented or crashes", function()
    clean [[
      local x = csp.xchan()
      local t = csp.thread(function(x) x:send(1); x:close() end, x)
      own = 1
      assert(x:recv() == 1); assert(select(2, x:recv()) == false)
      t:join(); own = 2
    ]]
  end)

  it("an order through another thread (send to it, join it) is annotated with release/acquire", function()
    clean [[
      local x, box = csp.xchan(), {}
      local t = csp.thread(function(x) x:recv() end, x)
      csp.go(function() data = 1; race.release(box); x:send(1) end)
      t:join(); race.acquire(box)
      print(data)
    ]]
  end)

  it("a write after an xchan send races with the receiver's read", function()
    racy "local x = csp.xchan(); wg:go(function() x:send(true); data = 2 end); x:recv(); print(data); wg:wait()"
    racy "local x = csp.xchan(1); wg:go(function() x:send(true); data = 2 end); x:recv(); print(data); wg:wait()"
  end)
end)

describe("race detector: atomics and syncmap synchronise", function()
  -- main polls until the goroutine's write to the object shows, then reads what it wrote before.
  local POLL = "local o = %s; csp.go(function() data = 1; %s end); while %s do csp.gosched() end; print(data)"

  it("atomic.int: store, add, swap and a cas that swaps, before the load that sees them", function()
    local a = "csp.atomic.int(0)"
    clean(POLL:format(a, "o:store(1)", "o:load() == 0"))
    clean(POLL:format(a, "o:add(2)", "o:load() == 0"))
    clean(POLL:format(a, "o:swap(3)", "o:load() == 0"))
    clean(POLL:format(a, "assert(o:cas(0, 4))", "o:load() == 0"))
    clean(POLL:format(a, "o:store(1)", "not o:cas(1, 2)"))
  end)

  it("atomic.value: store, swap and cas before the load that sees them", function()
    local v = "csp.atomic.value()"
    clean(POLL:format(v, "o:store(1)", "o:load() == nil"))
    clean(POLL:format(v, "o:swap(1)", "o:load() == nil"))
    clean(POLL:format(v, "assert(o:cas(nil, 1))", "o:load() == nil"))
  end)

  it("syncmap: store, load_or_store, swap, compare_and_swap, delete before the loads that see them", function()
    local m = "csp.syncmap()"
    clean(POLL:format(m, "o:store('k', 1)", "not o:load('k')"))
    clean(POLL:format(m, "o:load_or_store('k', 1)", "not o:load('k')"))
    clean(POLL:format(m, "o:swap('k', 1)", "not select(2, o:load_or_store('k', 0))"))
    clean(POLL:format("csp.syncmap(); o:store('k', 0)", "assert(o:compare_and_swap('k', 0, 1))",
      "o:load('k') == 0"))
    clean(POLL:format("csp.syncmap(); o:store('k', 0)", "o:delete('k')", "o:load('k')"))
    clean(POLL:format("csp.syncmap(); o:store('k', 0)", "o:load_and_delete('k')",
      "(function() local n = 0; o:range(function() n = n + 1 end); return n > 0 end)()"))
  end)

  it("a write after the store races; a cas that fails releases nothing", function()
    racy [[
      local o = csp.atomic.int(0)
      wg:go(function() o:store(1); data = 2 end)
      while o:load() == 0 do csp.gosched() end
      print(data); wg:wait()
    ]]
    racy [[
      local o = csp.atomic.int(0)
      wg:go(function() data = 1; assert(not o:cas(5, 6)) end)
      csp.gosched()
      o:load(); print(data); wg:wait()
    ]]
    racy [[
      local o = csp.syncmap()
      wg:go(function() o:store("k", 1); data = 2 end)
      while not o:load("k") do csp.gosched() end
      print(data); wg:wait()
    ]]
  end)
end)

describe("race detector: scope and reports", function()
  it("upvalues and unwatched tables are out of scope", function()
    clean [[
      local n = 0
      local acc = {}
      for i = 1, 10 do wg:go(function() n = n + 1; acc.a = i end) end
      wg:wait()
    ]]
  end)

  it("reports in Go's layout: both accesses, both goroutines' creation sites", function()
    local r = racy [[
      local function deposit(amount)
        local b = balance
        csp.gosched()
        balance = b + amount
      end
      balance = 0
      wg:go(function() deposit(200) end)
      wg:go(function() deposit(100) end)
      wg:wait()
    ]]
    local e = r.stderr
    assert.matches("==================\nWARNING: DATA RACE\n", e, 1, true)
    assert.matches("Write at balance by goroutine %d+:\n  [^\n]+:8 in function 'deposit'\n", e)
    assert.matches("Previous read at balance by goroutine %d+:\n  [^\n]+:6 in function 'deposit'\n", e)
    assert.matches("Goroutine %d+ created at:\n  [^\n]+:11 in main chunk\n", e)
    assert.matches("Goroutine %d+ created at:\n  [^\n]+:12 in main chunk\n", e)
  end)

  it("main is named as Go names it; a watched table by the name given", function()
    local r = racy [[
      local t = race.watch({}, "stats")
      csp.go(function() t.hits = 1 end)
      csp.sleep(0.01)
      print(t.hits)
    ]]
    assert.matches("Read at stats.hits by main goroutine:", r.stderr, 1, true)
    assert.matches("Previous write at stats.hits by goroutine 2:", r.stderr, 1, true)
    assert.not_matches("Goroutine 1 created", r.stderr, 1, true)
  end)

  it("each pair of locations is reported once", function()
    racy [[
      for round = 1, 3 do
        for i = 1, 3 do wg:go(function() x = i end) end
        csp.sleep(0.001)
      end
      wg:wait()
    ]]
  end)

  it("CSP_RACE=report reports and keeps the exit status", function()
    local r = race("wg:go(function() x = 1 end); x = 2; wg:wait()", { CSP_RACE = "report" })
    assert.are.equal(1, r.races)
    assert.are.equal(0, r.code)
    assert.matches("Found 1 data race(s)", r.stderr, 1, true)
  end)

  it("a failing program keeps its own exit status", function()
    local r = race("wg:go(function() x = 1 end); x = 2; wg:wait(); os.exit(3)")
    assert.are.equal(1, r.races)
    assert.are.equal(3, r.code)
  end)

  it("require 'csp.race' first turns the detector on without the environment", function()
    local r = run("require 'csp.race'\n" .. PRE .. "wg:go(function() x = 1 end); x = 2; wg:wait()")
    assert.matches("WARNING: DATA RACE", r.stderr, 1, true)
    assert.are.equal(66, r.code)
  end)

  it("off: no proxy, no report, watch returns its table unchanged", function()
    local r = race([[
      local t = {}
      assert(race.watch(t) == t and getmetatable(t) == nil and not race.enabled())
      assert(getmetatable(_G) == nil)
      wg:go(function() x = 1 end); x = 2; wg:wait()
    ]], { CSP_RACE = "0" })
    assert.are.equal("", r.stderr)
    assert.are.equal(0, r.code)
  end)

  it("watched tables and globals still behave as tables", function()
    clean [[
      local t = race.watch({ 1, 2, 3, a = "x" })
      table.insert(t, 4)
      assert(#t == 4 and t[4] == 4 and t.a == "x")
      local n = 0
      for k, v in pairs(t) do n = n + 1 end
      assert(n == 5)
      local s = 0
      for _, v in ipairs(t) do s = s + v end
      assert(s == 10)
      assert(getmetatable(t) == "csp.race.watched")
      assert(race.watch(t) == t)
      newglobal = 5
      local seen = {}
      for k in pairs(_G) do seen[k] = true end
      assert(seen.newglobal and seen.print)
      print(race.enabled())
    ]]
  end)

  it("watch checks its arguments", function()
    clean [[
      local ok, err = pcall(function() race.watch(5) end)
      assert(not ok and err:match("bad argument #1 to 'watch' %(table expected, got number%)"), err)
      ok, err = pcall(function() race.watch(setmetatable({}, {})) end)
      assert(not ok and err:match("bad argument #1 to 'watch' %(a table with a metatable"), err)
      ok, err = pcall(function() race.watch({}, {}) end)
      assert(not ok and err:match("bad argument #2 to 'watch' %(string expected"), err)
      ok, err = pcall(function() race.acquire(1) end)
      assert(not ok and err:match("bad argument #1 to 'acquire'"), err)
    ]]
  end)
end)
