-- Sync primitives: API.md "sync" (mutex, rwmutex, waitgroup, semaphore, cond, once, oncefunc)
-- and issue 3's "Semantics that matter". csp.pool is in sync_pool_spec.lua.
-- Every blocking call is exercised from the main thread (which runs the scheduler inline) and
-- from goroutines. "Is it still blocked?" is decided by settle(): the scheduler is cooperative,
-- so once nothing is runnable every goroutine sits in a blocking call.
-- Tests that leave goroutines parked (deadlock reports) release them again.
local csp = require "csp"
local util = require "spec.helpers.util"
local raises, pack = util.raises, util.pack

local function has(s, sub)
  assert.matches(sub, s, 1, true)
end

-- Runs goroutines until none is runnable: each then waits in a blocking call (or has ended).
local function settle()
  for _ = 1, 1000 do
    csp.gosched()
    if csp.stats().runnable == 0 then return end
  end
  error("goroutines still runnable after 1000 gosched calls")
end

-- One goroutine's entry of a deadlock report or dump: from its header to the next entry.
local function entry(msg, id)
  local s = msg:find("goroutine " .. id .. " [", 1, true)
  assert(s, ("no entry for goroutine %d in:\n%s"):format(id, msg))
  local e = msg:find("\n\ngoroutine ", s + 1, true)
  return msg:sub(s, e and e - 1 or #msg)
end

-- Fails if a value is ready on ch: whoever would send it is still blocked.
local function not_ready(ch)
  local _, _, got = ch:try_recv()
  assert.is_false(got, "expected nothing to be ready yet")
end

describe("csp.mutex", function()
  it("trylock takes a free mutex and fails on a held one", function()
    local mu = csp.mutex()
    assert.is_true(mu:trylock())
    assert.is_false(mu:trylock())
    mu:unlock()
    assert.is_true(mu:trylock())
    mu:unlock()
    mu:lock()
    assert.is_false(mu:trylock())
    mu:unlock()
  end)

  it("blocks main in lock until a goroutine unlocks", function()
    local mu, locked, log = csp.mutex(), csp.chan(), {}
    csp.go(function()
      mu:lock()
      locked:send(true)
      log[#log + 1] = "goroutine unlocks"
      mu:unlock()
    end)
    locked:recv()
    mu:lock()
    log[#log + 1] = "main locked"
    assert.same({ "goroutine unlocks", "main locked" }, log)
    mu:unlock()
  end)

  it("blocks a goroutine in lock until main unlocks", function()
    local mu, got = csp.mutex(), csp.chan(1)
    mu:lock()
    csp.go(function()
      mu:lock()
      got:send("locked")
      mu:unlock()
    end)
    settle()
    not_ready(got)
    mu:unlock()
    assert.equal("locked", got:recv())
    assert.is_true(mu:trylock())
    mu:unlock()
  end)

  it("may be unlocked by a goroutine other than the one that locked it", function()
    local mu, done = csp.mutex(), csp.chan()
    mu:lock()
    csp.go(function()
      mu:unlock()
      done:send(true)
    end)
    done:recv()
    assert.is_true(mu:trylock())
    -- and the other way round: locked in a goroutine, unlocked by main
    mu:unlock()
    csp.go(function()
      mu:lock()
      done:send(true)
    end)
    done:recv()
    assert.is_false(mu:trylock())
    mu:unlock()
    assert.is_true(mu:trylock())
    mu:unlock()
  end)

  it("serves waiters first-in first-out, newcomers included", function()
    local mu, wg = csp.mutex(), csp.waitgroup()
    local queued, acquired = {}, {}
    local function locker(name, newcomer)
      -- appending and then parking in lock is atomic: queued records the queue order
      queued[#queued + 1] = name
      mu:lock()
      acquired[#acquired + 1] = name
      if newcomer then
        -- a newcomer arriving while others wait must queue behind them
        wg:go(locker, name .. "+", false)
        csp.gosched()
      end
      mu:unlock()
    end
    mu:lock()
    for i = 1, 20 do wg:go(locker, "g" .. i, true) end
    settle()
    assert.equal(20, #queued)
    assert.equal(0, #acquired)
    mu:unlock()
    wg:wait()
    assert.equal(40, #acquired)
    assert.same(queued, acquired)
  end)

  it("is handed to main in FIFO order too", function()
    local mu, order, done = csp.mutex(), {}, csp.chan()
    mu:lock()
    csp.go(function()
      mu:lock()
      order[#order + 1] = "goroutine"
      mu:unlock()
      done:send(true)
    end)
    settle()
    csp.go(mu.unlock, mu)
    mu:lock()  -- queued behind the goroutine
    order[#order + 1] = "main"
    mu:unlock()
    done:recv()
    assert.same({ "goroutine", "main" }, order)
  end)

  it("raises sync: unlock of unlocked mutex, and stays usable", function()
    local mu = csp.mutex()
    has(raises(mu.unlock, mu), "sync: unlock of unlocked mutex")
    mu:lock()
    mu:unlock()
    has(raises(mu.unlock, mu), "sync: unlock of unlocked mutex")
    local res = csp.chan()
    csp.go(function() res:send(pack(pcall(mu.unlock, mu))) end)
    local r = res:recv()
    assert.is_false(r[1])
    has(tostring(r[2]), "sync: unlock of unlocked mutex")
    assert.is_true(mu:trylock())
    mu:unlock()
  end)

  it("relocked by main waits, and the deadlock report names sync.Mutex.Lock and main as holder", function()
    local mu = csp.mutex()
    mu:lock()
    local msg = raises(mu.lock, mu)
    has(msg, "all goroutines are asleep - deadlock!")
    local e = entry(msg, 1)
    has(e, "goroutine 1 [sync.Mutex.Lock]:")
    has(e, "held by goroutine 1")
    -- still held by main, and main left the queue: the runtime is usable
    assert.is_false(mu:trylock())
    mu:unlock()
    assert.is_true(mu:trylock())
    mu:unlock()
    local c = csp.chan()
    csp.go(function() mu:lock() c:send("alive") mu:unlock() end)
    assert.equal("alive", c:recv())
  end)

  it("relocked by a goroutine waits, and the deadlock report names that goroutine as holder", function()
    local mu, never, done = csp.mutex(), csp.chan(), csp.chan()
    local function relock()
      mu:lock()
      mu:lock()
    end
    local id = csp.go(function()
      relock()
      mu:unlock()
      done:send(true)
    end)
    local msg = raises(never.recv, never)
    has(msg, "all goroutines are asleep - deadlock!")
    local e = entry(msg, id)
    has(e, "goroutine " .. id .. " [sync.Mutex.Lock]:")
    has(e, "held by goroutine " .. id)
    has(e, "relock")
    -- main releases it (any goroutine may unlock): the waiting goroutine gets the mutex
    mu:unlock()
    assert.is_true(done:recv())
    assert.is_true(mu:trylock())
    mu:unlock()
  end)

  it("deadlock report names the holder for every waiter", function()
    local mu, hold, done = csp.mutex(), csp.chan(), csp.chan(1)
    local holder = csp.go(function()
      mu:lock()
      hold:recv()
      mu:unlock()
    end)
    local waiter = csp.go(function()
      mu:lock()
      mu:unlock()
      done:send(true)
    end)
    settle()
    local msg = raises(mu.lock, mu)
    has(msg, "all goroutines are asleep - deadlock!")
    has(entry(msg, 1), "goroutine 1 [sync.Mutex.Lock]:")
    has(entry(msg, 1), "held by goroutine " .. holder)
    has(entry(msg, waiter), "goroutine " .. waiter .. " [sync.Mutex.Lock]:")
    has(entry(msg, waiter), "held by goroutine " .. holder)
    assert.is_nil(entry(msg, holder):find("held by", 1, true))
    hold:send(true)
    assert.is_true(done:recv())
    assert.is_true(mu:trylock())
    mu:unlock()
  end)

  it("raises attempt to block in a non-yieldable context, leaving no waiter behind", function()
    local mu, res = csp.mutex(), csp.chan()
    mu:lock()
    csp.go(function()
      local ok, err = pcall(table.sort, { 1, 2, 3 }, function(a, b)
        mu:lock()
        return a < b
      end)
      res:send(pack(ok, err))
    end)
    local r = res:recv()
    assert.is_false(r[1])
    has(tostring(r[2]), "attempt to block in a non-yieldable context")
    mu:unlock()
    assert.is_true(mu:trylock(), "a goroutine that failed to block was left queued")
    mu:unlock()
  end)

  it("keeps 10k contending goroutines mutually excluded", function()
    local mu, wg = csp.mutex(), csp.waitgroup()
    local n, inside, max_inside, count = 10000, 0, 0, 0
    for _ = 1, n do
      wg:go(function()
        mu:lock()
        inside = inside + 1
        if inside > max_inside then max_inside = inside end
        csp.gosched()  -- let the others run (and queue) while it is held
        count = count + 1
        inside = inside - 1
        mu:unlock()
      end)
    end
    wg:wait()
    assert.equal(n, count)
    assert.equal(1, max_inside)
    assert.is_true(mu:trylock())
    mu:unlock()
  end)
end)

describe("csp.rwmutex", function()
  it("admits several readers at once", function()
    local rw, res = csp.rwmutex(), csp.chan()
    rw:rlock()
    assert.is_true(rw:tryrlock())
    csp.go(function()
      rw:rlock()  -- must not block while only readers hold it
      res:send("reading")
    end)
    assert.equal("reading", res:recv())
    assert.is_false(rw:trylock())
    rw:runlock()
    rw:runlock()
    assert.is_false(rw:trylock())
    rw:runlock()
    assert.is_true(rw:trylock())
    rw:unlock()
  end)

  it("a writer excludes readers and writers", function()
    local rw, log = csp.rwmutex(), csp.chan(2)
    rw:lock()
    assert.is_false(rw:tryrlock())
    assert.is_false(rw:trylock())
    csp.go(function()
      rw:rlock()
      log:send("reader")
      rw:runlock()
    end)
    csp.go(function()
      rw:lock()
      log:send("writer")
      rw:unlock()
    end)
    settle()
    not_ready(log)
    rw:unlock()
    local got = { (log:recv()), (log:recv()) }
    table.sort(got)
    assert.same({ "reader", "writer" }, got)
    assert.is_true(rw:trylock())
    rw:unlock()
  end)

  it("blocks main in lock while a goroutine reads, and in rlock while a goroutine writes", function()
    local rw, held, log = csp.rwmutex(), csp.chan(), {}
    csp.go(function()
      rw:rlock()
      held:send(true)
      log[#log + 1] = "reader leaves"
      rw:runlock()
    end)
    held:recv()
    rw:lock()
    log[#log + 1] = "main writes"
    rw:unlock()
    csp.go(function()
      rw:lock()
      held:send(true)
      log[#log + 1] = "writer leaves"
      rw:unlock()
    end)
    held:recv()
    rw:rlock()
    log[#log + 1] = "main reads"
    rw:runlock()
    assert.same({ "reader leaves", "main writes", "writer leaves", "main reads" }, log)
  end)

  it("a waiting writer blocks new readers (Go's rule)", function()
    local rw, log, done = csp.rwmutex(), {}, csp.chan(2)
    rw:rlock()
    csp.go(function()
      rw:lock()
      log[#log + 1] = "writer"
      rw:unlock()
      done:send(true)
    end)
    settle()
    assert.is_false(rw:tryrlock(), "a reader got in ahead of a waiting writer")
    csp.go(function()
      rw:rlock()
      log[#log + 1] = "late reader"
      rw:runlock()
      done:send(true)
    end)
    settle()
    assert.same({}, log)
    rw:runlock()
    done:recv()
    done:recv()
    assert.same({ "writer", "late reader" }, log)
  end)

  it("a waiting writer blocks main's rlock too", function()
    local rw, hold, log = csp.rwmutex(), csp.chan(), {}
    csp.go(function()
      rw:rlock()
      hold:recv()
      log[#log + 1] = "first reader leaves"
      rw:runlock()
    end)
    settle()
    csp.go(function()
      rw:lock()
      log[#log + 1] = "writer"
      rw:unlock()
    end)
    settle()  -- the writer waits for the first reader
    csp.go(hold.send, hold, true)
    rw:rlock()
    log[#log + 1] = "main reads"
    rw:runlock()
    assert.same({ "first reader leaves", "writer", "main reads" }, log)
  end)

  it("lets in every reader that waited when the writer unlocks", function()
    local rw, inside, release, wdone = csp.rwmutex(), csp.chan(3), csp.chan(), csp.chan(1)
    rw:lock()
    for i = 1, 3 do
      csp.go(function()
        rw:rlock()
        inside:send(i)
        release:recv()
        rw:runlock()
      end)
    end
    settle()
    csp.go(function()  -- a writer queued after the readers
      rw:lock()
      wdone:send(true)
      rw:unlock()
    end)
    settle()
    not_ready(inside)
    rw:unlock()
    -- all three hold the read lock together: none has run runlock yet
    local got = { (inside:recv()), (inside:recv()), (inside:recv()) }
    table.sort(got)
    assert.same({ 1, 2, 3 }, got)
    settle()
    not_ready(wdone)
    for _ = 1, 3 do release:send(true) end
    assert.is_true(wdone:recv())
    assert.is_true(rw:trylock())
    rw:unlock()
  end)

  it("raises on runlock without readers and on unlock when not write-locked", function()
    local rw = csp.rwmutex()
    has(raises(rw.runlock, rw), "sync: RUnlock of unlocked RWMutex")
    has(raises(rw.unlock, rw), "sync: Unlock of unlocked RWMutex")
    rw:lock()
    has(raises(rw.runlock, rw), "sync: RUnlock of unlocked RWMutex")
    rw:unlock()
    rw:rlock()
    has(raises(rw.unlock, rw), "sync: Unlock of unlocked RWMutex")
    rw:runlock()
    has(raises(rw.runlock, rw), "sync: RUnlock of unlocked RWMutex")
    local res = csp.chan()
    csp.go(function() res:send(pack(pcall(rw.runlock, rw))) end)
    local r = res:recv()
    assert.is_false(r[1])
    has(tostring(r[2]), "sync: RUnlock of unlocked RWMutex")
    -- still usable
    assert.is_true(rw:trylock())
    assert.is_false(rw:tryrlock())
    rw:unlock()
    assert.is_true(rw:tryrlock())
    rw:runlock()
  end)

  it("reports a deadlock with Go's RWMutex wait reasons", function()
    local rw, never = csp.rwmutex(), csp.chan()
    rw:lock()
    local msg = raises(rw.rlock, rw)
    has(msg, "all goroutines are asleep - deadlock!")
    has(entry(msg, 1), "goroutine 1 [sync.RWMutex.RLock]:")
    rw:unlock()
    rw:rlock()
    local id = csp.go(function() rw:lock() rw:unlock() end)
    msg = raises(never.recv, never)
    has(entry(msg, id), "goroutine " .. id .. " [sync.RWMutex.Lock]:")
    rw:runlock()
    settle()
    assert.is_true(rw:trylock())
    rw:unlock()
  end)
end)

describe("csp.waitgroup", function()
  it("wg:go and once:call take callable tables, as csp.go does", function()
    local log = {}
    local callable = setmetatable({}, { __call = function(_, x) log[#log + 1] = x end })
    local wg = csp.waitgroup()
    wg:go(callable, "wg")
    wg:wait()
    csp.once():call(callable, "once")
    assert.same({ "wg", "once" }, log)
    has(raises(wg.go, wg, {}), "function expected")
    local once = csp.once()
    has(raises(once.call, once, {}), "function expected")
  end)

  it("wait on main returns once every add is matched by done", function()
    local wg, finished = csp.waitgroup(), 0
    wg:add(3)
    for _ = 1, 3 do
      csp.go(function()
        csp.gosched()
        finished = finished + 1
        wg:done()
      end)
    end
    wg:wait()
    assert.equal(3, finished)
  end)

  it("releases every waiting goroutine at zero", function()
    local wg, released = csp.waitgroup(), csp.chan(3)
    wg:add(2)
    for i = 1, 3 do
      csp.go(function()
        wg:wait()
        released:send(i)
      end)
    end
    settle()
    wg:done()
    settle()
    not_ready(released)
    wg:done()
    local got = { (released:recv()), (released:recv()), (released:recv()) }
    table.sort(got)
    assert.same({ 1, 2, 3 }, got)
  end)

  it("wait with a zero counter returns at once without running other goroutines", function()
    local wg, ran = csp.waitgroup(), false
    csp.go(function() ran = true end)
    wg:wait()
    assert.is_false(ran)
    settle()
    assert.is_true(ran)
  end)

  it("can be reused after the counter returns to zero", function()
    local wg = csp.waitgroup()
    for round = 1, 3 do
      local n = 0
      for _ = 1, round do
        wg:go(function() n = n + 1 end)
      end
      wg:wait()
      assert.equal(round, n)
    end
  end)

  it("raises sync: WaitGroup counter overflow, and stays usable", function()
    local wg = csp.waitgroup()
    wg:add(math.maxinteger)
    has(raises(wg.add, wg, 1), "sync: WaitGroup counter overflow")
    has(raises(wg.add, wg, math.maxinteger), "sync: WaitGroup counter overflow")
    wg:add(-math.maxinteger)  -- back to 0: nothing wrapped
    wg:wait()
    wg:add(1)
    has(raises(wg.add, wg, math.maxinteger), "sync: WaitGroup counter overflow")
    wg:done()
    wg:wait()
  end)

  it("raises sync: negative WaitGroup counter, and stays usable", function()
    local wg = csp.waitgroup()
    has(raises(wg.done, wg), "sync: negative WaitGroup counter")
    has(raises(wg.add, wg, -1), "sync: negative WaitGroup counter")
    wg:add(2)
    has(raises(wg.add, wg, -3), "sync: negative WaitGroup counter")
    -- the counter is still 2: one done leaves a waiter blocked
    local released = csp.chan(1)
    csp.go(function()
      wg:wait()
      released:send(true)
    end)
    wg:done()
    settle()
    not_ready(released)
    wg:done()
    assert.is_true(released:recv())
    wg:wait()
  end)

  it("go passes the arguments, nils included", function()
    local wg, got = csp.waitgroup(), nil
    wg:go(function(...) got = pack(...) end, 1, nil, "x", nil)
    wg:wait()
    assert.same({ n = 4, 1, nil, "x", nil }, got)
  end)

  it("go counts done only when f ends, even after f blocked", function()
    local wg, gate, released = csp.waitgroup(), csp.chan(), csp.chan(1)
    wg:go(function() gate:recv() end)
    csp.go(function()
      wg:wait()
      released:send(true)
    end)
    settle()
    not_ready(released)
    gate:send(true)
    assert.is_true(released:recv())
  end)

  it("go called from a goroutine, waited for in a goroutine", function()
    local wg, res = csp.waitgroup(), csp.chan()
    csp.go(function()
      local sum = 0
      for i = 1, 5 do wg:go(function(k) csp.gosched() sum = sum + k end, i) end
      wg:wait()
      res:send(sum)
    end)
    assert.equal(15, res:recv())
  end)

  it("go counts a panicking f as done: the panic reaches main, then wait returns", function()
    local wg, gate = csp.waitgroup(), csp.chan()
    wg:go(function() gate:recv() end)
    local id = wg:go(function() error("wg boom") end)
    local ok, err = pcall(wg.wait, wg)
    assert.is_false(ok)
    has(tostring(err), "wg boom")
    if math.type(id) == "integer" then has(tostring(err), "goroutine " .. id .. ": ") end
    gate:send(true)
    wg:wait()
  end)

  it("go counts a goroutine ended by csp.goexit as done", function()
    local wg, after = csp.waitgroup(), false
    wg:go(function()
      csp.goexit()
      after = true
    end)
    wg:wait()
    assert.is_false(after)
  end)

  it("add raises a bad-argument error for a non-integer", function()
    local wg = csp.waitgroup()
    for _, bad in ipairs({ "x", 1.5, {}, true }) do
      has(raises(wg.add, wg, bad), "bad argument")
    end
    has(raises(wg.go, wg, 42), "bad argument")
    wg:wait()  -- nothing was added by the failed calls
  end)
end)

describe("csp.semaphore", function()
  it("try_acquire takes weights while they fit", function()
    local s = csp.semaphore(3)
    assert.is_true(s:try_acquire())
    assert.is_true(s:try_acquire(2))
    assert.is_false(s:try_acquire())
    s:release(2)
    assert.is_false(s:try_acquire(3))
    assert.is_true(s:try_acquire(2))
    s:release(3)
    assert.is_true(s:try_acquire(3))
    s:release(3)
  end)

  it("blocks main in acquire until a goroutine releases", function()
    local s, log = csp.semaphore(2), {}
    s:acquire(2)
    csp.go(function()
      log[#log + 1] = "release"
      s:release()
    end)
    s:acquire()
    log[#log + 1] = "main acquired"
    assert.same({ "release", "main acquired" }, log)
    assert.is_false(s:try_acquire())
    s:release(2)
  end)

  it("blocks a goroutine in acquire until main releases enough", function()
    local s, got = csp.semaphore(4), csp.chan(1)
    s:acquire(3)
    csp.go(function()
      s:acquire(3)
      got:send(true)
    end)
    settle()
    not_ready(got)
    s:release(1)
    settle()
    not_ready(got)  -- 2 free, 3 wanted
    s:release(1)
    assert.is_true(got:recv())
    s:release(1)
    assert.is_false(s:try_acquire(2))
  end)

  it("does not let small requests pass a large one at the head (FIFO)", function()
    local s, log, done = csp.semaphore(10), {}, csp.chan(2)
    s:acquire(10)
    csp.go(function()
      s:acquire(10)
      log[#log + 1] = "large"
      s:release(10)
      done:send(true)
    end)
    settle()
    csp.go(function()
      s:acquire(1)
      log[#log + 1] = "small"
      s:release(1)
      done:send(true)
    end)
    settle()
    s:release(5)  -- 5 free: enough for the small one, not for the large one at the head
    settle()
    assert.same({}, log)
    assert.is_false(s:try_acquire(1), "try_acquire passed a waiting request")
    s:release(5)
    done:recv()
    done:recv()
    assert.same({ "large", "small" }, log)
  end)

  it("serves waiters of mixed weights in queue order", function()
    local s, wg = csp.semaphore(5), csp.waitgroup()
    local queued, acquired = {}, {}
    s:acquire(5)
    for i = 1, 12 do
      local k = i % 3 + 1
      wg:go(function()
        queued[#queued + 1] = i
        s:acquire(k)
        acquired[#acquired + 1] = i
        csp.gosched()
        s:release(k)
      end)
    end
    settle()
    s:release(5)
    wg:wait()
    assert.same(queued, acquired)
    assert.is_true(s:try_acquire(5))
    s:release(5)
  end)

  it("raises when releasing more than held, and stays usable", function()
    local s = csp.semaphore(2)
    has(raises(s.release, s), "semaphore: released more than held")
    s:acquire()
    has(raises(s.release, s, 2), "semaphore: released more than held")
    s:release()
    assert.is_true(s:try_acquire(2))
    s:release(2)
  end)

  -- golang.org/x/sync/semaphore: TryAcquire(n > size) is false; Acquire(n > size) waits (for
  -- its ctx) apart from the queue, so it holds up no other request.
  it("a weight larger than the size: try_acquire is false, acquire waits forever, apart", function()
    local s = csp.semaphore(2)
    assert.is_false(s:try_acquire(3))
    assert.is_true(s:try_acquire(2))
    s:release(2)
    local r = require("spec.helpers.run").run([[
      local csp = require "csp"
      local s = csp.semaphore(2)
      local id = csp.go(function() s:acquire(3) print("acquired 3") end)
      csp.gosched()
      s:acquire(2)  -- not held up behind the doomed request
      print(csp.dump():match("goroutine " .. id .. " %[(.-)%]"))
      s:release(2)
      local ok, err = pcall(s.acquire, s, 5)  -- main: nothing can ever grant it
      print(ok, err:match("all goroutines are asleep %- deadlock!") ~= nil,
        err:match("goroutine 1 %[(.-)%]"), err:match("goroutine " .. id .. " %[(.-)%]"))
    ]])
    assert.equal("", r.stderr)
    assert.equal("semacquire\nfalse\ttrue\tsemacquire\tsemacquire\n", r.stdout)
  end)

  it("raises bad-argument errors for bad sizes and weights", function()
    for _, bad in ipairs({ -1, 1.5, "x", {} }) do
      has(raises(csp.semaphore, bad), "bad argument #1")
    end
    local s = csp.semaphore(3)
    for _, bad in ipairs({ -1, 1.5, "x", {} }) do
      has(raises(s.acquire, s, bad), "bad argument")
      has(raises(s.try_acquire, s, bad), "bad argument")
      has(raises(s.release, s, bad), "bad argument")
    end
    assert.is_true(s:try_acquire(3))
    s:release(3)
  end)
end)

describe("csp.cond", function()
  it("wait releases the mutex and holds it again when it returns", function()
    local mu = csp.mutex()
    local c = csp.cond(mu)
    local flag, res = false, csp.chan()
    csp.go(function()
      mu:lock()
      while not flag do c:wait() end
      res:send(mu:trylock())  -- false: wait returned holding it
      mu:unlock()
    end)
    settle()
    assert.is_true(mu:trylock(), "wait did not release the mutex")
    flag = true
    c:signal()
    settle()
    not_ready(res)  -- signalled, but main still holds the mutex
    mu:unlock()
    assert.is_false(res:recv())
    assert.is_true(mu:trylock())
    mu:unlock()
  end)

  it("wait on main, signalled by a goroutine", function()
    local mu = csp.mutex()
    local c = csp.cond(mu)
    local flag = false
    mu:lock()
    csp.go(function()
      mu:lock()
      flag = true
      c:signal()
      mu:unlock()
    end)
    while not flag do c:wait() end
    assert.is_false(mu:trylock())
    mu:unlock()
  end)

  it("signal wakes one waiter, first-in first-out", function()
    local mu = csp.mutex()
    local c = csp.cond(mu)
    local queued, woke = {}, csp.chan(10)
    for i = 1, 5 do
      csp.go(function()
        mu:lock()
        queued[#queued + 1] = i
        c:wait()
        mu:unlock()
        woke:send(i)
      end)
    end
    settle()
    assert.equal(5, #queued)
    for k = 1, 5 do
      c:signal()
      assert.equal(queued[k], woke:recv())
      settle()
      not_ready(woke)  -- exactly one per signal
    end
    c:signal()  -- nobody waits: a no-op
  end)

  it("broadcast wakes every waiter", function()
    local mu = csp.mutex()
    local c = csp.cond(mu)
    local woke = csp.chan(10)
    for i = 1, 5 do
      csp.go(function()
        mu:lock()
        c:wait()
        mu:unlock()
        woke:send(i)
      end)
    end
    settle()
    mu:lock()
    c:broadcast()
    mu:unlock()
    local got = {}
    for k = 1, 5 do got[k] = woke:recv() end
    table.sort(got)
    assert.same({ 1, 2, 3, 4, 5 }, got)
    c:broadcast()
  end)

  it("wait without holding the mutex raises, on main and in a goroutine", function()
    local mu = csp.mutex()
    local c = csp.cond(mu)
    has(raises(c.wait, c), "sync: unlock of unlocked mutex")
    local res = csp.chan()
    csp.go(function() res:send(pack(pcall(c.wait, c))) end)
    local r = res:recv()
    assert.is_false(r[1])
    has(tostring(r[2]), "sync: unlock of unlocked mutex")
    -- no waiter was left behind: a signal now does nothing, the mutex is free
    c:signal()
    assert.is_true(mu:trylock())
    mu:unlock()
  end)

  it("requires a mutex", function()
    for _, bad in ipairs({ 42, {}, "x", false }) do
      local msg = raises(csp.cond, bad)
      has(msg, "bad argument #1")
      has(msg, "mutex")
    end
    has(raises(csp.cond), "bad argument #1")
    has(raises(csp.cond, csp.rwmutex()), "mutex")
  end)
end)

describe("csp.once", function()
  it("runs f once, with its arguments; later calls do nothing", function()
    local once, calls = csp.once(), {}
    once:call(function(...) calls[#calls + 1] = pack(...) end, 1, nil, 3)
    once:call(function(...) calls[#calls + 1] = pack(...) end, 4)
    once:call(error, "not called")
    assert.same({ { n = 3, 1, nil, 3 } }, calls)
  end)

  it("makes concurrent callers wait until f returns (f blocked on a channel)", function()
    local once, gate, log, done = csp.once(), csp.chan(), {}, csp.chan(4)
    local calls = 0
    local function f()
      calls = calls + 1
      gate:recv()
      log[#log + 1] = "f returns"
    end
    for i = 1, 3 do
      csp.go(function()
        once:call(f)
        log[#log + 1] = "caller " .. i
        done:send(true)
      end)
    end
    settle()
    assert.same({}, log)
    gate:send(true)
    for _ = 1, 3 do done:recv() end
    assert.equal(1, calls)
    assert.equal("f returns", log[1])
    assert.equal(4, #log)
  end)

  it("makes main wait for f running in a goroutine (f sleeping)", function()
    local once, log = csp.once(), {}
    csp.go(function()
      once:call(function()
        csp.sleep(0.01)
        log[#log + 1] = "f"
      end)
    end)
    settle()  -- the goroutine is inside f, asleep
    once:call(function() log[#log + 1] = "second f" end)
    log[#log + 1] = "main"
    assert.same({ "f", "main" }, log)
  end)

  it("runs f on main while goroutines wait for it", function()
    local once, res = csp.once(), csp.chan(2)
    local v = 0
    for _ = 1, 2 do
      csp.go(function()
        once:call(function() v = -1 end)
        res:send(v)
      end)
    end
    once:call(function()
      csp.gosched()  -- lets the goroutines call and wait
      v = 7
    end)
    assert.equal(7, res:recv())
    assert.equal(7, res:recv())
  end)

  it("propagates an error in f to its caller, counts as done, releases the waiters", function()
    local once, gate, res = csp.once(), csp.chan(), csp.chan(3)
    csp.go(function()
      res:send(pack("first", pcall(once.call, once, function()
        gate:recv()
        error("once boom")
      end)))
    end)
    settle()
    csp.go(function()
      res:send(pack("waiter", pcall(once.call, once, function() error("not called") end)))
    end)
    settle()
    not_ready(res)
    gate:send(true)
    local got = {}
    for _ = 1, 2 do
      local r = res:recv()
      got[r[1]] = r
    end
    assert.is_false(got.first[2])
    has(tostring(got.first[3]), "once boom")
    assert.is_true(got.waiter[2], "a concurrent waiter got f's error")
    local called = false
    once:call(function() called = true end)
    assert.is_false(called)
  end)

  it("propagates an error in f on main and counts as done", function()
    local once = csp.once()
    has(raises(once.call, once, function() error("main boom") end), "main boom")
    local called = false
    once:call(function() called = true end)
    assert.is_false(called)
  end)

  it("counts as done when f's goroutine exits with csp.goexit", function()
    local once, done = csp.once(), csp.chan(1)
    csp.go(function()
      once:call(function()
        csp.gosched()
        csp.goexit()
      end)
    end)
    settle()
    csp.go(function()
      once:call(function() error("not called") end)
      done:send(true)
    end)
    assert.is_true(done:recv())
  end)

  it("called again from inside f deadlocks like Go instead of recursing", function()
    local once, inner = csp.once(), 0
    once:call(function()
      local ok, err = pcall(once.call, once, function() inner = inner + 1 end)
      assert.is_false(ok)
      has(tostring(err), "all goroutines are asleep - deadlock!")
    end)
    assert.equal(0, inner)
    once:call(function() inner = inner + 1 end)
    assert.equal(0, inner)
  end)

  it("call requires a function", function()
    local once = csp.once()
    has(raises(once.call, once, 42), "bad argument")
    has(raises(once.call, once), "bad argument")
    local called = false
    once:call(function() called = true end)
    assert.is_true(called, "a failed call marked the once as done")
  end)
end)

describe("csp.oncefunc", function()
  it("calls f once and returns its cached results, nils included", function()
    local calls = 0
    local g = csp.oncefunc(function()
      calls = calls + 1
      return nil, 2, nil, "four", nil
    end)
    for _ = 1, 3 do
      assert.same({ n = 5, nil, 2, nil, "four", nil }, pack(g()))
    end
    assert.equal(1, calls)
  end)

  it("returns no values when f returns none", function()
    local g = csp.oncefunc(function() end)
    assert.equal(0, select("#", g()))
    assert.equal(0, select("#", g()))
  end)

  it("re-raises f's error to every caller, without calling f again", function()
    local calls, e = 0, { "error object" }
    local g = csp.oncefunc(function()
      calls = calls + 1
      error(e)
    end)
    for _ = 1, 3 do
      local ok, err = pcall(g)
      assert.is_false(ok)
      assert.equal(e, err)
    end
    local h = csp.oncefunc(function() error("oncefunc boom") end)
    local m1 = raises(h)
    local m2 = raises(h)
    has(m1, "oncefunc boom")
    assert.equal(m1, m2)
    local res = csp.chan()
    csp.go(function() res:send(pack(pcall(h))) end)
    local r = res:recv()
    assert.is_false(r[1])
    assert.equal(m1, r[2])
    assert.equal(1, calls)
  end)

  it("runs f once for concurrent callers, who all get its results", function()
    local calls, gate, res = 0, csp.chan(), csp.chan(5)
    local g = csp.oncefunc(function()
      calls = calls + 1
      gate:recv()
      return "v", nil
    end)
    for _ = 1, 4 do csp.go(function() res:send(pack(g())) end) end
    settle()
    not_ready(res)
    csp.go(function() gate:send(true) end)
    assert.same({ n = 2, "v", nil }, pack(g()))  -- main waits too
    for _ = 1, 4 do assert.same({ n = 2, "v", nil }, res:recv()) end
    assert.equal(1, calls)
  end)

  it("re-raises to concurrent callers waiting when f fails", function()
    local gate, res = csp.chan(), csp.chan(3)
    local g = csp.oncefunc(function()
      gate:recv()
      error("late boom")
    end)
    for _ = 1, 3 do csp.go(function() res:send(pack(pcall(g))) end) end
    settle()
    gate:send(true)
    for _ = 1, 3 do
      local r = res:recv()
      assert.is_false(r[1])
      has(tostring(r[2]), "late boom")
    end
  end)

  it("raises to later callers when f's goroutine exited, without calling f again", function()
    local calls, done = 0, csp.chan()
    local g = csp.oncefunc(function()
      calls = calls + 1
      csp.goexit()
    end)
    csp.go(function() g() end)
    csp.go(function()
      local ok = pcall(g)
      done:send(ok)
    end)
    assert.is_false(done:recv())
    assert.is_false(pcall(g))
    assert.equal(1, calls)
  end)

  it("requires a function", function()
    for _, bad in ipairs({ 42, "x", {}, true }) do
      has(raises(csp.oncefunc, bad), "bad argument #1")
    end
    has(raises(csp.oncefunc), "bad argument #1")
  end)
end)

-- API.md: a main thread that catches a panic with pcall finds the runtime still usable. The
-- panic cancels main's blocked call, so that call must leave nothing behind: no queued waiter,
-- and no lock or weight that was handed to main in the same scheduling round.
describe("a panic caught while main waits", function()
  it("in mutex lock takes main out of the queue", function()
    local mu, hold = csp.mutex(), csp.chan()
    csp.go(function()
      mu:lock()
      hold:recv()
      mu:unlock()
    end)
    settle()
    csp.go(error, "unrelated panic")
    has(raises(mu.lock, mu), "unrelated panic")
    hold:send(true)
    settle()
    assert.is_true(mu:trylock(), "main's cancelled lock call still got the mutex")
    mu:unlock()
  end)

  it("in mutex lock, after the unlock handed the mutex to main, leaves it unlocked", function()
    local mu = csp.mutex()
    mu:lock()
    csp.go(function()
      mu:unlock()  -- hands the mutex to main
      error("boom after unlock")
    end)
    has(raises(mu.lock, mu), "boom after unlock")
    assert.is_true(mu:trylock(), "mutex leaked: locked although main's lock raised")
    mu:unlock()
  end)

  it("in rwmutex rlock, after the writer's unlock let main in, leaves no reader", function()
    local rw = csp.rwmutex()
    rw:lock()
    csp.go(function()
      rw:unlock()
      error("boom after unlock")
    end)
    has(raises(rw.rlock, rw), "boom after unlock")
    assert.is_true(rw:trylock(), "read lock leaked: held although main's rlock raised")
    rw:unlock()
  end)

  it("in semaphore acquire, after a release granted main's weight, leaves it free", function()
    local s = csp.semaphore(1)
    s:acquire()
    csp.go(function()
      s:release()
      error("boom after release")
    end)
    has(raises(s.acquire, s), "boom after release")
    assert.is_true(s:try_acquire(), "weight leaked: held although main's acquire raised")
    s:release()
  end)
end)

describe("sync methods on the wrong type", function()
  local objects = {
    mutex = csp.mutex(),
    rwmutex = csp.rwmutex(),
    waitgroup = csp.waitgroup(),
    semaphore = csp.semaphore(1),
    cond = csp.cond(csp.mutex()),
    once = csp.once(),
  }
  local methods = {
    mutex = { "lock", "unlock", "trylock" },
    rwmutex = { "rlock", "runlock", "lock", "unlock", "trylock", "tryrlock" },
    waitgroup = { "add", "done", "wait", "go" },
    semaphore = { "acquire", "release", "try_acquire" },
    cond = { "wait", "signal", "broadcast" },
    once = { "call" },
  }
  for tname, names in pairs(methods) do
    for _, name in ipairs(names) do
      it(("%s.%s names its first argument"):format(tname, name), function()
        local f = objects[tname][name]
        assert.is_function(f)
        local bads = { 42, "x", {}, true, csp.chan() }
        for other, obj in pairs(objects) do
          if other ~= tname then bads[#bads + 1] = obj end
        end
        for _, bad in ipairs(bads) do
          local msg = raises(f, bad, function() end)
          assert.is_truthy(msg:find("bad argument #1", 1, true) or msg:find("bad self", 1, true),
            msg)
          has(msg, tname)
        end
        local msg = raises(f)
        assert.is_truthy(msg:find("bad argument #1", 1, true) or msg:find("bad self", 1, true), msg)
      end)
    end
  end

  it("left every object unchanged", function()
    assert.is_true(objects.mutex:trylock())
    objects.mutex:unlock()
    assert.is_true(objects.rwmutex:trylock())
    objects.rwmutex:unlock()
    objects.waitgroup:wait()
    assert.is_true(objects.semaphore:try_acquire())
    objects.semaphore:release()
    local called = false
    objects.once:call(function() called = true end)
    assert.is_true(called)
  end)
end)
