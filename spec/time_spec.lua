-- Time: API.md "Time" (sleep, now, after, tick, ticker, timer; Go 1.23 timer channels; after_func).
-- Bounds are generous: "at least d" and "well under d + 0.5 s".
local csp = require "csp"
local util = require "spec.helpers.util"
local run = require "spec.helpers.run"
local raises, in_go, pack = util.raises, util.in_go, util.pack

local SLACK = 0.5

-- Asserts that the next receive from c does not come before `far` seconds: something
-- else (an after channel) wins the race instead.
local function assert_quiet(c, far)
  local i = csp.select { csp.recv(c), csp.recv(csp.after(far)) }
  assert.equal(2, i, "a value arrived on a channel that should stay quiet")
end

describe("csp.now", function()
  it("is a monotonic float clock in seconds", function()
    local prev = csp.now()
    assert.equal("float", math.type(prev))
    for _ = 1, 10000 do
      local t = csp.now()
      assert(t >= prev, "csp.now went backwards")
      prev = t
    end
  end)

  it("has sub-millisecond resolution", function()
    local fractional = false
    for _ = 1, 200 do
      local ms = csp.now() * 1000
      if ms ~= math.floor(ms) then fractional = true break end
    end
    assert.is_true(fractional)
    -- the smallest observable step, over a few tries in case the process is descheduled
    local best = math.huge
    for _ = 1, 20 do
      local t0 = csp.now()
      local t1
      repeat t1 = csp.now() until t1 ~= t0
      best = math.min(best, t1 - t0)
    end
    assert.is_true(best < 0.001, "smallest step " .. best)
  end)

  it("advances with real time", function()
    local t0, c0 = csp.now(), os.clock()
    csp.sleep(0.1)
    local d = csp.now() - t0
    assert.is_true(d >= 0.1 and d < 0.1 + SLACK, "elapsed " .. d)
    -- parked, not spinning
    assert.is_true(os.clock() - c0 < 0.05, "sleep burnt CPU")
  end)
end)

describe("csp.sleep", function()
  it("parks the main thread at least d", function()
    local t0 = csp.now()
    csp.sleep(0.05)
    local d = csp.now() - t0
    assert.is_true(d >= 0.05 and d < 0.05 + SLACK, "elapsed " .. d)
  end)

  it("parks a goroutine at least d while others run", function()
    local res, order = csp.chan(2), {}
    csp.go(function()
      local t0 = csp.now()
      csp.sleep(0.05)
      order[#order + 1] = "sleeper"
      res:send(csp.now() - t0)
    end)
    csp.go(function() order[#order + 1] = "other"; res:send(0) end)
    local a, b = res:recv(), res:recv()
    assert.equal(0, a)
    assert.is_true(b >= 0.05 and b < 0.05 + SLACK, "elapsed " .. b)
    assert.same({ "other", "sleeper" }, order)
  end)

  it("d <= 0 just yields", function()
    for _, d in ipairs({ 0, -1 }) do
      local order, done = {}, csp.chan(2)
      csp.go(function()
        order[#order + 1] = "a1"
        csp.sleep(d)
        order[#order + 1] = "a2"
        done:send(true)
      end)
      csp.go(function() order[#order + 1] = "b"; done:send(true) end)
      local t0 = csp.now()
      done:recv()
      done:recv()
      assert.same({ "a1", "b", "a2" }, order)
      assert.is_true(csp.now() - t0 < SLACK)
    end
    local t0 = csp.now()
    csp.sleep(0)
    csp.sleep(-5)
    assert.is_true(csp.now() - t0 < SLACK)
  end)

  it("wakes sleepers in deadline order", function()
    local res = csp.chan(3)
    for _, d in ipairs({ 0.03, 0.01, 0.02 }) do
      csp.go(function() csp.sleep(d); res:send(d) end)
    end
    assert.same({ 0.01, 0.02, 0.03 }, { (res:recv()), (res:recv()), (res:recv()) })
  end)

  it("many sleepers all wake", function()
    local n, done = 2000, csp.chan(2000)
    for i = 1, n do
      csp.go(function() csp.sleep((i % 10) * 0.002); done:send(i) end)
    end
    local sum = 0
    for _ = 1, n do sum = sum + done:recv() end
    assert.equal(n * (n + 1) // 2, sum)
  end)

  it("a sleeping goroutine is not deadlocked", function()
    local ch = csp.chan()
    csp.go(function() csp.sleep(0.05); ch:send("woke") end)
    assert.equal("woke", ch:recv())
  end)

  it("raises in a non-yieldable context inside a goroutine", function()
    in_go(function()
      local err = raises(table.sort, { 2, 1 }, function(a, b)
        csp.sleep(0.001)
        return a < b
      end)
      assert.matches("attempt to block in a non-yieldable context", err, 1, true)
      csp.sleep(0.001) -- the goroutine can still sleep
    end)
  end)

  it("raises a bad-argument error for a non-number", function()
    assert.matches("bad argument", raises(csp.sleep, "x"), 1, true)
    assert.matches("bad argument", raises(csp.sleep, {}), 1, true)
  end)
end)

describe("csp.after", function()
  it("delivers csp.now() once, after d, on a channel of capacity 1", function()
    local t0 = csp.now()
    local c = csp.after(0.05)
    assert.equal(1, c:cap())
    local v, ok = c:recv()
    local t1 = csp.now()
    assert.is_true(ok)
    assert.equal("float", math.type(v))
    assert.is_true(v >= t0 + 0.05, "value before start + d")
    assert.is_true(v <= t1)
    assert.is_true(t1 - t0 < 0.05 + SLACK)
    assert_quiet(c, 0.1)
    assert.same({ n = 3, nil, false, false }, pack(c:try_recv()))
  end)

  it("keeps its value until received", function()
    local t0 = csp.now()
    local c = csp.after(0.01)
    csp.sleep(0.05)
    local v, ok, done = c:try_recv()
    assert.is_true(done)
    assert.is_true(ok)
    assert.is_true(v >= t0 + 0.01 and v <= csp.now())
  end)

  it("fires promptly for d <= 0", function()
    for _, d in ipairs({ 0, -1 }) do
      local t0 = csp.now()
      local v = csp.after(d):recv()
      assert.is_true(v >= t0 and csp.now() - t0 < SLACK)
    end
  end)

  it("wakes a goroutine parked on it", function()
    local res = csp.chan()
    csp.go(function()
      local t0 = csp.now()
      local v = csp.after(0.03):recv()
      res:send(v - t0)
    end)
    local d = res:recv()
    assert.is_true(d >= 0.03 and d < 0.03 + SLACK)
  end)

  it("many afters in one select: the shortest wins", function()
    local cases = {}
    for i = 1, 50 do cases[i] = csp.recv(csp.after(1 + i * 0.01)) end
    cases[51] = csp.recv(csp.after(0.02))
    assert.equal(51, (csp.select(cases)))
  end)
end)

-- Go 1.23's maybeRunChan: a receive or select looks at a timer channel's deadline itself, so a
-- tick that is due is there even before the scheduler fired it; its value is when it was due.
describe("a timer channel past its deadline", function()
  local function spin(d) local t = csp.now() + d; while csp.now() < t do end end

  it("is ready for a non-blocking select and try_recv before the scheduler fires it", function()
    assert.equal(1, (csp.select { csp.recv(csp.after(0)), default = true }))
    local t0 = csp.now()
    local t = csp.timer(0.01)
    local t1 = csp.now()
    spin(0.03)  -- main computes: the scheduler gets no chance to fire it
    local v, ok, got = t.c:try_recv()
    assert.is_true(ok and got)
    assert.is_true(v >= t0 + 0.01 and v <= t1 + 0.01, "the value is when it was due")
    assert.same({ n = 3, nil, false, false }, pack(t.c:try_recv()))
    assert.is_false(t:stop(), "it fired")
  end)

  it("gives a ticker's tick once, then waits for the next period; in a goroutine too", function()
    local done = csp.chan()
    csp.go(function()
      local tk = csp.ticker(0.01)
      spin(0.035)
      local _, ok, got = tk.c:try_recv()
      local _, _, again = tk.c:try_recv()
      tk:stop()
      local _, _, zero = csp.timer(0).c:try_recv()
      done:send({ ok and got, again, zero })
    end)
    assert.same({ true, false, true }, done:recv())
  end)
end)

describe("csp.tick", function()
  it("returns nil for d <= 0", function()
    assert.is_nil(csp.tick(0))
    assert.is_nil(csp.tick(-1))
  end)

  it("delivers increasing times every d", function()
    local d = 0.02
    local t0 = csp.now()
    local c = csp.tick(d)
    local prev = t0
    for k = 1, 3 do
      local v = c:recv()
      assert.is_true(v > prev, "tick values must increase")
      assert.is_true(v >= t0 + k * d - 0.001, "tick " .. k .. " came early")
      prev = v
    end
    assert.is_true(csp.now() - t0 < 3 * d + SLACK)
  end)

  it("drops ticks for a slow receiver", function()
    local c = csp.tick(0.04)
    csp.sleep(0.25)
    local n = 0
    while select(3, c:try_recv()) do
      n = n + 1
      assert.is_true(n <= 1, "ticks piled up for a slow receiver")
    end
  end)
end)

describe("csp.ticker", function()
  it("raises for d <= 0, at creation and on reset", function()
    assert.is_false(pcall(csp.ticker, 0))
    assert.is_false(pcall(csp.ticker, -1))
    local t = csp.ticker(1)
    assert.is_false(pcall(t.reset, t, 0))
    assert.is_false(pcall(t.reset, t, -0.5))
    t:stop()
  end)

  it("ticks on t.c every d", function()
    local d = 0.02
    local t0 = csp.now()
    local t = csp.ticker(d)
    local prev = t0
    for k = 1, 3 do
      local v, ok = t.c:recv()
      assert.is_true(ok)
      assert.is_true(v > prev and v >= t0 + k * d - 0.001)
      prev = v
    end
    t:stop()
  end)

  it("delivers nothing after stop, not even a tick already due", function()
    local t = csp.ticker(0.01)
    t.c:recv()
    csp.sleep(0.05) -- ticks are due but not received
    t:stop()
    assert.same({ n = 3, nil, false, false }, pack(t.c:try_recv()))
    assert_quiet(t.c, 0.1)
  end)

  it("reset changes the period and drops a stale tick", function()
    local t = csp.ticker(0.01)
    csp.sleep(0.05)
    local t0 = csp.now()
    t:reset(0.08)
    assert.same({ n = 3, nil, false, false }, pack(t.c:try_recv()))
    local v = t.c:recv()
    assert.is_true(v >= t0 + 0.08, "tick came before the new period")
    assert.is_true(csp.now() - t0 < 0.08 + SLACK)
    t:stop()
  end)

  it("reset restarts a stopped ticker", function()
    local t = csp.ticker(0.01)
    t:stop()
    t:reset(0.02)
    local t0 = csp.now()
    local v = t.c:recv()
    assert.is_true(v >= t0 + 0.02 - 0.001)
    t:stop()
  end)
end)

describe("csp.timer", function()
  it("fires once on t.c after d", function()
    local t0 = csp.now()
    local t = csp.timer(0.03)
    local v = t.c:recv()
    assert.is_true(v >= t0 + 0.03 and csp.now() - t0 < 0.03 + SLACK)
    assert_quiet(t.c, 0.06)
  end)

  it("fires promptly for d <= 0", function()
    local t0 = csp.now()
    csp.timer(0).c:recv()
    csp.timer(-1).c:recv()
    assert.is_true(csp.now() - t0 < SLACK)
  end)

  it("stop returns true while pending, false once stopped", function()
    local t = csp.timer(10)
    assert.is_true(t:stop())
    assert.is_false(t:stop())
    assert.same({ n = 3, nil, false, false }, pack(t.c:try_recv()))
  end)

  it("stop returns false after the value was received", function()
    local t = csp.timer(0)
    t.c:recv()
    assert.is_false(t:stop())
  end)

  it("stop after expiry without a receive drops the value and returns true (Go 1.23)", function()
    local t = csp.timer(0.01)
    csp.sleep(0.05)
    assert.is_true(t:stop())
    assert.same({ n = 3, nil, false, false }, pack(t.c:try_recv()))
    assert_quiet(t.c, 0.05)
  end)

  it("reset returns true while pending and moves the deadline", function()
    local t = csp.timer(10)
    local t0 = csp.now()
    assert.is_true(t:reset(0.03))
    local v = t.c:recv()
    assert.is_true(v >= t0 + 0.03 and csp.now() - t0 < 0.03 + SLACK)
    assert.is_false(t:reset(0.02)) -- fired and received: not pending
    t0 = csp.now()
    v = t.c:recv()
    assert.is_true(v >= t0 + 0.02 - 0.001)
  end)

  it("reset after stop returns false and starts it again", function()
    local t = csp.timer(10)
    t:stop()
    assert.is_false(t:reset(0.01))
    local _, ok = t.c:recv()
    assert.is_true(ok)
  end)

  it("reset drops a stale value (Go 1.23)", function()
    local t = csp.timer(0.01)
    csp.sleep(0.05)
    local t0 = csp.now()
    assert.is_true(t:reset(0.06))
    assert.same({ n = 3, nil, false, false }, pack(t.c:try_recv()))
    local v = t.c:recv()
    assert.is_true(v >= t0 + 0.06, "stale or early value after reset")
  end)

  it("stop wakes nobody: a goroutine parked on t.c stays parked", function()
    local t = csp.timer(0.02)
    local res = csp.chan(1)
    csp.go(function()
      res:send(csp.select { csp.recv(t.c), csp.recv(csp.after(0.1)) })
    end)
    csp.gosched()
    assert.is_true(t:stop())
    assert.equal(2, res:recv())
  end)

  it("works in select with other cases", function()
    local t = csp.timer(0.02)
    local i = csp.select { csp.recv(csp.chan()), csp.recv(t.c) }
    assert.equal(2, i)
  end)

  -- The deadline heap under churn: timers added, stopped and reset at random positions of a
  -- 4-ary heap several levels deep. Each timer's deadline lies in [lo, hi] (csp.now() read just
  -- before and after the call that set it), and its tick carries the time it fired: fired in
  -- that order, a timer must never come before one whose deadline is surely earlier (its hi
  -- below the first's lo), nor fire before its own deadline.
  it("fires 600 timers in deadline order through stops and resets, the stopped never", function()
    math.randomseed(7)
    local n, fired, done = 600, {}, csp.chan()
    local timers, lo, hi, stopped = {}, {}, {}, {}
    local function arm(i, f)
      local d = 0.002 + math.random() * 0.06
      lo[i] = csp.now() + d
      local r = f(d)
      hi[i] = csp.now() + d
      return r
    end
    for i = 1, n do
      timers[i] = arm(i, csp.timer)
    end
    for i = 1, n do
      local r = math.random(3)
      if r == 1 then
        assert.is_true(timers[i]:stop())
        stopped[i] = true
      elseif r == 2 then
        assert.is_true(arm(i, function(d) return timers[i]:reset(d) end))
      end
    end
    local live = {}
    for i = 1, n do
      if not stopped[i] then
        live[#live + 1] = i
        csp.go(function()
          fired[i] = timers[i].c:recv()
          done:send(true)
        end)
      end
    end
    for _ = 1, #live do done:recv() end
    table.sort(live, function(i, j) return fired[i] < fired[j] end)
    for a = 1, #live do
      local i = live[a]
      assert(fired[i] >= lo[i] - 1e-9, ("timer %d fired before its deadline"):format(i))
      for b = a + 1, #live do
        local j = live[b]
        assert(fired[j] == fired[i] or hi[j] >= lo[i],
          ("timer %d fired before timer %d, due earlier"):format(i, j))
      end
    end
    local latest = 0
    for i in pairs(stopped) do latest = math.max(latest, hi[i]) end
    if csp.now() < latest then csp.sleep(latest - csp.now() + 0.005) end  -- past every one's deadline
    for i in pairs(stopped) do
      local _, _, got = timers[i].c:try_recv()
      assert.is_false(got, "a stopped timer delivered")
    end
  end)
end)

describe("csp.after_func", function()
  it("runs f once, after d, in a goroutine of its own", function()
    local got = csp.chan(2)
    local t0 = csp.now()
    local t = csp.after_func(0.02, function(...)
      got:send({ id = csp.goid(), at = csp.now(), n = select("#", ...) })
    end)
    local r = got:recv()
    assert.is_true(r.at - t0 >= 0.02 - 1e-3, "fired early")
    assert.is_true(r.at - t0 < 0.02 + SLACK, "fired late")
    assert.are_not.equal(csp.goid(), r.id)
    assert.are.equal(0, r.n)
    assert_quiet(got, 0.05)
    assert.is_false(t:stop())
  end)

  it("stop before it fires returns true and f never runs; a second stop returns false", function()
    local got = csp.chan(1)
    local t = csp.after_func(0.02, function() got:send(true) end)
    assert.is_true(t:stop())
    assert.is_false(t:stop())
    assert_quiet(got, 0.05)
  end)

  it("stop after it fired returns false", function()
    local got = csp.chan()
    local t = csp.after_func(0, function() got:send(true) end)
    assert.is_true(got:recv())
    assert.is_false(t:stop())
  end)

  it("reset while pending moves the call and returns true", function()
    local got = csp.chan(2)
    local t0 = csp.now()
    local t = csp.after_func(0.01, function() got:send(csp.now()) end)
    assert.is_true(t:reset(0.06))
    local at = got:recv()
    assert.is_true(at - t0 >= 0.06 - 1e-3, "ran at the first deadline")
    assert_quiet(got, 0.05)
  end)

  it("reset after it fired or was stopped returns false and runs f again", function()
    local got = csp.chan(2)
    local n = 0
    local t = csp.after_func(0, function() n = n + 1 got:send(n) end)
    assert.are.equal(1, got:recv())
    assert.is_false(t:reset(0.001))
    assert.are.equal(2, got:recv())
    t:reset(30)
    assert.is_true(t:stop())
    assert.is_false(t:reset(0))
    assert.are.equal(3, got:recv())
  end)

  it("runs f even when nothing references the timer (Go keeps it)", function()
    local got = csp.chan()
    csp.after_func(0.01, function() got:send("ran") end)
    collectgarbage()
    collectgarbage()
    assert.are.equal("ran", got:recv())
    for _ = 1, 100 do csp.after_func(0.001, function() end) end
    collectgarbage()
    csp.after_func(0.005, function() got:send("again") end)
    assert.are.equal("again", got:recv())
  end)

  it("many calls run in deadline order, each once", function()
    local got = csp.chan(50)
    for i = 50, 1, -1 do csp.after_func(i * 0.001, function() got:send(i) end) end
    local seen = {}
    for _ = 1, 50 do seen[#seen + 1] = got:recv() end
    for i = 1, 50 do assert.are.equal(i, seen[i]) end
    assert_quiet(got, 0.02)
  end)

  it("a pending call is not counted by numgoroutine; f's goroutine is while it runs", function()
    csp.gosched()
    local base = csp.numgoroutine()
    local hold, got = csp.chan(), csp.chan()
    local t = csp.after_func(0.01, function()
      got:send(csp.numgoroutine())
      hold:recv()
    end)
    assert.are.equal(base, csp.numgoroutine())
    assert.are.equal(base + 1, got:recv())
    hold:send(true)
    t:stop()
  end)

  it("a panic in f is reported as a goroutine panic", function()
    local ok, err = pcall(function()
      csp.after_func(0, function() error("boom in after_func") end)
      csp.select { csp.recv(csp.after(5)) }
    end)
    assert.is_false(ok)
    assert.matches("^goroutine %d+: .*boom in after_func", tostring(err))
    in_go(function() csp.sleep(0.001) end) -- the runtime still works
    local got = csp.chan()
    csp.after_func(0, function() got:send("after") end)
    assert.are.equal("after", got:recv())
  end)

  it("raises bad-argument errors naming the argument", function()
    assert.matches("bad argument #1 to '[%w.]*after_func' %(number expected, got string%)",
      raises(csp.after_func, "x", print))
    assert.matches("bad argument #1 to '[%w.]*after_func' %(number expected, got nan%)",
      raises(csp.after_func, 0 / 0, print))
    assert.matches("bad argument #2 to '[%w.]*after_func' %(function expected, got no value%)",
      raises(csp.after_func, 1))
    assert.matches("bad argument #2 to '[%w.]*after_func' %(function expected, got table%)",
      raises(csp.after_func, 1, {}))
    local t = csp.after_func(30, print)
    t:stop()
    assert.matches("bad argument #1 to 'reset' %(number expected, got string%)",
      raises(function() t:reset("x") end))
    assert.matches("bad argument #1 to 'stop' %(csp.afterfunc expected, got table%)",
      raises(function() t.stop({}) end))
    assert.matches("csp.afterfunc expected, got csp.timer",
      raises(function() t.stop(csp.timer(1)) end))
    -- callable tables are functions
    local got = csp.chan()
    csp.after_func(0, setmetatable({}, { __call = function() got:send(1) end }))
    assert.are.equal(1, got:recv())
  end)
end)

describe("after_func under the race detector", function()
  local function race(code)
    local r = run.run('local csp = require "csp"\n' .. code, { CSP_RACE = "1" }, 20)
    local _, n = r.stderr:gsub("WARNING: DATA RACE", "")
    return n, r
  end

  it("orders after_func's (and reset's) caller before f, and nothing else", function()
    local n, r = race [[
      data = 1
      local done = csp.chan()
      local t = csp.after_func(0.001, function()
        data = data + 1
        if data2 then data2 = data2 + 1 end
        done:send(true)
      end)
      done:recv()
      data2 = 1
      t:reset(0.001)
      done:recv()
      print(data, data2)
    ]]
    assert.are.equal(0, n, r.stderr)
    assert.are.equal("3\t2\n", r.stdout)
    n, r = race [[
      csp.after_func(0.001, function() data = 1 end)
      while data == nil do csp.sleep(0.001) end -- sleeping is no synchronisation
      print(data)
    ]]
    assert.are.equal(1, n, r.stderr)
  end)
end)

describe("after_func and deadlock detection", function()
  it("a pending call is no deadlock: f may complete the wait", function()
    local ch = csp.chan()
    csp.after_func(0.02, function() ch:send("from f") end)
    assert.are.equal("from f", ch:recv())  -- main blocks with nothing else that could wake it
  end)

  it("once the calls have run and nothing can complete the wait, the deadlock is reported", function()
    local ran = false
    csp.after_func(0.01, function() ran = true end)
    local msg = raises(csp.chan().recv, csp.chan())
    assert.is_true(ran)
    assert.matches("all goroutines are asleep - deadlock!", msg, 1, true)
  end)

  it("a stopped call keeps nothing alive", function()
    local t = csp.after_func(30, print)
    t:stop()
    local t0 = csp.now()
    local msg = raises(csp.chan().recv, csp.chan())
    assert.is_true(csp.now() - t0 < SLACK)
    assert.matches("all goroutines are asleep - deadlock!", msg, 1, true)
  end)

  it("csp.run waits for goroutines, not for calls not started yet", function()
    local t
    local t0 = csp.now()
    csp.run(function() t = csp.after_func(30, print) end)
    assert.is_true(csp.now() - t0 < SLACK, "csp.run waited for a pending after_func")
    assert.is_true(t:stop())
    local got = csp.chan(1)
    csp.run(function() csp.after_func(0.01, function() got:send(1) end) csp.sleep(0.05) end)
    assert.are.equal(1, got:recv())
  end)

  it("a script ends with a call pending, and reports a deadlock once calls have run", function()
    local r = run.run([[
      local csp = require "csp"
      csp.after_func(60, function() print("ran") end)
      print("end")
    ]], nil, 5)
    assert.equal(0, r.code, r.stderr)
    assert.equal("end\n", r.stdout)
    r = run.run([[
      local csp = require "csp"
      csp.after_func(0.01, function() io.write("ran ") end)
      csp.chan():recv()
    ]], nil, 5)
    assert.are_not.equal(0, r.code)
    assert.are_not.equal(124, r.code, "hung instead of reporting a deadlock")
    assert.equal("ran ", r.stdout)
    assert.matches("all goroutines are asleep - deadlock!", r.stderr, 1, true)
  end)
end)

describe("huge durations", function()
  it("math.huge, 1e308 and 2^53 never fire: sleep, after, timer, tick, ticker", function()
    for _, d in ipairs({ math.huge, 1e308, 2 ^ 53 }) do
      local a, tm, tk, tc = csp.after(d), csp.timer(d), csp.ticker(d), csp.tick(d)
      local short = csp.after(0.02)
      local i = csp.select { csp.recv(a), csp.recv(tm.c), csp.recv(tk.c), csp.recv(tc), csp.recv(short) }
      assert.equal(5, i)
      assert.is_true(tm:stop())
      tk:stop()
      tm:reset(d)
      tk:reset(d)
      assert.equal(2, csp.select { csp.recv(tm.c), csp.recv(csp.after(0.01)) })
      tm:stop()
      tk:stop()
    end
  end)

  it("sleep(math.huge) sleeps (in a child: nothing can wake it)", function()
    local r = require("spec.helpers.run").run([[
      local csp = require "csp"
      for _, d in ipairs({ math.huge, 1e308, 2 ^ 53 }) do
        local woke = false
        csp.go(function() csp.sleep(d); woke = true end)
        csp.sleep(0.02)
        assert(not woke, d)
      end
      print("ok")
    ]])
    assert.equal("", r.stderr)
    assert.equal("ok\n", r.stdout)
  end)
end)

describe("tiny periods", function()
  it("ticker(1e-9), reset(1e-9), tick(1e-9), timer(1e-9) do not lock the process up", function()
    -- a child: before the fix the first blocking call spun for ever
    local r = require("spec.helpers.run").run([[
      local csp = require "csp"
      local tk = csp.ticker(1e-9)
      csp.sleep(0.01)
      local n, t0 = 0, csp.now()
      while csp.now() - t0 < 0.02 do tk.c:recv(); n = n + 1 end
      tk:reset(1e-9)
      tk.c:recv()
      local t = csp.tick(1e-9)
      t:recv(); t:recv()
      for _, d in ipairs({ 1e-9, 3e-8, 1e-7, 5e-324 }) do
        local tm = csp.timer(d)
        tm.c:recv()
        tm:reset(d)
        tm.c:recv()
        local tk2 = csp.ticker(d)
        local got = csp.chan()
        csp.go(function() for _ = 1, 50 do tk2.c:recv() end got:close() end)
        got:recv()
        tk2:stop()
      end
      tk:stop()
      print("ok", n > 1)
    ]], nil, 10)
    assert.equal("", r.stderr)
    assert.equal("ok\ttrue\n", r.stdout)
  end)
end)

describe("timers and deadlock detection", function()
  it("a timer or ticker that nothing waits on does not keep the program alive", function()
    local tk = csp.ticker(0.01)
    local tm = csp.timer(30)
    local af = csp.after(30)
    local tc = csp.tick(0.01)
    local blocked = csp.chan()
    local id = csp.go(function() blocked:recv() end)
    local never = csp.chan()
    local t0 = csp.now()
    local msg = raises(never.recv, never)
    assert.is_true(csp.now() - t0 < SLACK, "deadlock detection waited for a timer")
    assert.matches("all goroutines are asleep - deadlock!", msg, 1, true)
    assert.matches("goroutine 1 [chan receive]:", msg, 1, true)
    assert.matches("goroutine " .. id .. " [chan receive]:", msg, 1, true)
    -- still usable: the timers still work and the parked goroutine can be released
    assert.is_true(tk.c:recv() > t0)
    assert.is_true(tc:recv() > t0)
    assert.is_true(tm:stop())
    assert.same({ n = 3, nil, false, false }, pack(af:try_recv()))
    tk:stop()
    blocked:close()
    csp.gosched()
  end)

  it("waiting on a stopped timer's channel is a deadlock", function()
    local t = csp.timer(10)
    t:stop()
    local t0 = csp.now()
    local msg = raises(t.c.recv, t.c)
    assert.is_true(csp.now() - t0 < SLACK)
    assert.matches("all goroutines are asleep - deadlock!", msg, 1, true)
    assert.is_false(t:reset(0.01))
    assert.is_true(select(2, t.c:recv()))
  end)

  it("a goroutine waiting on a timer channel is not deadlocked", function()
    local ch = csp.chan()
    csp.go(function()
      csp.after(0.03):recv()
      ch:send("fired")
    end)
    assert.equal("fired", ch:recv())
  end)

  it("a script with a forgotten ticker still ends, and still reports a deadlock", function()
    local r = run.run([[
      local csp = require "csp"
      local t = csp.ticker(0.01)
      csp.go(function() t.c:recv() end)
      csp.sleep(0.03)
      print("end")
    ]], nil, 5)
    assert.equal(0, r.code, r.stderr)
    assert.equal("end\n", r.stdout)
    r = run.run([[
      local csp = require "csp"
      local t = csp.ticker(0.01)
      local tm = csp.timer(60)
      csp.chan():recv()
    ]], nil, 5)
    assert.are_not.equal(0, r.code)
    assert.are_not.equal(124, r.code, "hung instead of reporting a deadlock")
    assert.matches("all goroutines are asleep - deadlock!", r.stderr, 1, true)
  end)
end)

describe("timers and the collector", function()
  it("unreachable tickers and timers are collected without a crash", function()
    for _ = 1, 200 do
      csp.ticker(0.001)
      csp.timer(0.001)
      csp.after(0.001)
      csp.tick(0.001)
    end
    collectgarbage()
    collectgarbage()
    csp.sleep(0.02)
    collectgarbage()
    csp.sleep(0.01)
    -- the runtime still works
    in_go(function() csp.sleep(0.001) end)
  end)

  it("a timer channel still fires for a goroutine waiting on it after its timer object is dropped", function()
    local res = csp.chan(3)
    csp.go(function() res:send((select(2, csp.ticker(0.02).c:recv()))) end)
    csp.go(function() res:send((select(2, csp.timer(0.02).c:recv()))) end)
    csp.go(function() res:send((select(2, csp.after(0.02):recv()))) end)
    csp.gosched()
    for _ = 1, 5 do collectgarbage() end
    for _ = 1, 3 do assert.is_true(res:recv()) end
  end)
end)

-- README "Scheduling": a goroutine woken because its deadline passed runs ahead of the run
-- queue (as Go's runnext), in deadline order, and only one firing's worth at a time.
describe("goroutines woken by a deadline", function()
  -- Spins (no yield) until t: the deadlines before t have passed when the loop next polls.
  local function spin_until(t)
    while csp.now() < t do end
  end

  -- Runs the queued goroutines: n of them that log their index, plus those already parked.
  local function run_queued(log, n, wg)
    for i = 1, n do
      wg:add(1)
      csp.go(function() log[#log + 1] = i; wg:done() end)
    end
    wg:wait()
  end

  local function pos(log, v)
    for i, x in ipairs(log) do if x == v then return i end end
  end

  it("run ahead of goroutines queued before them, in deadline order", function()
    local log, wg = {}, csp.waitgroup()
    local t0 = csp.now()
    wg:add(3)
    csp.go(function() csp.sleep(0.003); log[#log + 1] = "sleep 3ms"; wg:done() end)
    csp.go(function() csp.after(0.001):recv(); log[#log + 1] = "after 1ms"; wg:done() end)
    csp.go(function() csp.sleep(0.002); log[#log + 1] = "sleep 2ms"; wg:done() end)
    csp.gosched() -- all three park on their deadlines
    spin_until(t0 + 0.004)
    run_queued(log, 300, wg) -- strictly FIFO, the three would come after the 300
    local a, b, c = pos(log, "after 1ms"), pos(log, "sleep 2ms"), pos(log, "sleep 3ms")
    assert.is_true(a < b and b < c, table.concat(log, " ", 1, 70))
    -- the loop polls every 64 resumes: the first poll finds all three due
    assert.is_true(c <= 64 + 3, ("the sleepers ran at %d, %d, %d of 303"):format(a, b, c))
  end)

  it("cannot starve the run queue, however often deadlines pass", function()
    local stop, wakes, starved = false, 0, false
    local wg = csp.waitgroup()
    for _ = 1, 100 do
      wg:add(1)
      csp.go(function()
        while not stop do
          csp.sleep(1e-9) -- due at the next poll, every time
          wakes = wakes + 1
          if wakes > 200000 then stop, starved = true, true end
        end
        wg:done()
      end)
    end
    local done = csp.chan()
    csp.go(function()
      for _ = 1, 200 do csp.gosched() end -- to the back of the queue, 200 times
      done:send(true)
    end)
    done:recv()
    stop = true
    wg:wait()
    assert.is_false(starved, "a goroutine in the run queue waited behind " .. wakes .. " timer wakeups")
  end)
end)
