-- csp.stats(): API.md "Observability". The fields added for monitoring: blocked goroutines by
-- reason, the run queue's high-water mark, the timer heap, values and bytes buffered in channels,
-- and the event-loop lag (how long a ready goroutine waited to run).
local csp = require "csp"
local run = require "spec.helpers.run"

describe("csp.stats metrics", function()
  it("counts blocked goroutines by their wait reason", function()
    local before = csp.stats().blocked_by
    local c, quit = csp.chan(), csp.chan()
    local mu = csp.mutex()
    mu:lock()
    local wg = csp.waitgroup()
    wg:add(1)
    csp.go(function() csp.select { csp.recv(c), csp.recv(quit) } end)
    csp.go(function() csp.select { csp.recv(c), csp.recv(quit) } end)
    csp.go(function() mu:lock(); mu:unlock() end)
    csp.go(function() wg:wait() end)
    csp.go(function() csp.select { csp.recv(quit), csp.recv(csp.after(60)) } end)
    csp.gosched()
    local by = csp.stats().blocked_by
    local function delta(r) return (by[r] or 0) - (before[r] or 0) end
    assert.are.equal(3, delta("select"))
    assert.are.equal(1, delta("sync.Mutex.Lock"))
    assert.are.equal(1, delta("sync.WaitGroup.Wait"))
    local sum = 0
    for _, n in pairs(by) do sum = sum + n end
    assert.are.equal(csp.stats().blocked, sum)
    quit:close()
    mu:unlock()
    wg:done()
    csp.gosched()
    by = csp.stats().blocked_by
    assert.are.equal(0, delta("select"))
    assert.are.equal(0, delta("sync.Mutex.Lock"))
  end)

  it("keeps the run queue's high-water mark", function()
    local n = csp.stats().runnable_max
    for _ = 1, n + 10 do csp.go(function() end) end
    assert.are.equal(n + 10, csp.stats().runnable)
    csp.gosched()
    local s = csp.stats()
    assert.are.equal(0, s.runnable)
    assert.is_true(s.runnable_max >= n + 10)
  end)

  it("reports the timer heap and the deadlines someone waits for", function()
    local s0 = csp.stats()
    local t = csp.ticker(60) -- armed, nobody waiting
    local done = csp.chan()
    csp.go(function() csp.sleep(60); done:send(1) end)
    csp.gosched()
    local s = csp.stats()
    assert.are.equal(s0.timer_heap + 2, s.timer_heap)
    assert.are.equal(s0.timers_waited + 1, s.timers_waited)
    assert.are.equal(s.timers, s.timer_heap)
    t:stop()
    assert.are.equal(s0.timer_heap + 1, csp.stats().timer_heap)
  end)

  it("counts values and string bytes buffered in channels", function()
    collectgarbage()
    local s0 = csp.stats()
    local c = csp.chan(10)
    c:send("hello")
    c:send(42)
    c:send("xy")
    local s = csp.stats()
    assert.are.equal(s0.chan_buffered + 3, s.chan_buffered)
    assert.are.equal(s0.chan_buffered_bytes + 7, s.chan_buffered_bytes)
    c:recv()
    s = csp.stats()
    assert.are.equal(s0.chan_buffered + 2, s.chan_buffered)
    assert.are.equal(s0.chan_buffered_bytes + 2, s.chan_buffered_bytes)
    -- a full buffer: the parked sender's value takes the freed slot
    local full = csp.chan(1)
    full:send("abc")
    csp.go(function() full:send("defg") end)
    csp.gosched()
    assert.are.equal("abc", full:recv())
    s = csp.stats()
    assert.are.equal(s0.chan_buffered + 3, s.chan_buffered)
    assert.are.equal(s0.chan_buffered_bytes + 6, s.chan_buffered_bytes)
    -- unbuffered handoffs and timer ticks are not buffered values
    local u = csp.chan()
    csp.go(function() u:send("zzz") end)
    u:recv()
    assert.are.equal(s0.chan_buffered + 3, csp.stats().chan_buffered)
    -- a collected channel's values leave the count
    c, full = nil, nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    s = csp.stats()
    assert.are.equal(s0.chan_buffered, s.chan_buffered)
    assert.are.equal(s0.chan_buffered_bytes, s.chan_buffered_bytes)
  end)

  it("measures the event-loop lag: p50 and p99 of a ready goroutine's wait to run", function()
    -- in a fresh process, so the quantiles are this program's alone: 320 goroutines ready at
    -- once, each spinning 0.4 ms before it ends, so most wait several spins to run
    local r = run.run([[
      local csp = require "csp"
      local wg = csp.waitgroup()
      for _ = 1, 320 do
        wg:go(function()
          local t = csp.now()
          while csp.now() - t < 0.0004 do end
        end)
      end
      wg:wait()
      local s = csp.stats()
      print(s.loop_lag_samples, s.loop_lag_p50, s.loop_lag_p99)
    ]])
    assert.are.equal(0, r.code, r.stderr)
    local n, p50, p99 = r.stdout:match("^(%d+)\t(%S+)\t(%S+)\n$")
    n, p50, p99 = tonumber(n), tonumber(p50), tonumber(p99)
    assert.is_true(n >= 5, r.stdout) -- one ready in 64 is timed
    assert.is_true(p50 >= 0.002 and p50 <= p99, r.stdout)
    assert.is_true(p99 >= 0.02 and p99 < 10, r.stdout)
  end)
end)
