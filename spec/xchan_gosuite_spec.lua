-- Tests ported from Go's own suite (runtime/chan_test.go: TestChan, TestSelfSelect,
-- TestMultiConsumer; test/chan/nonblock.go) and an invariant fuzzer, each run twice: with local
-- channels and with channels replaced by xchans (one thread), plus the fuzzer with producers in
-- other threads. "Does not complete" is checked after csp.gosched(), which runs every goroutine
-- that is ready (Go's tests sleep instead). make tsan leaves out the one-thread tests (tag
-- onethread): nothing cross-thread to check, and their many switches on main overflow gcc 12
-- TSan's shadow stack (a CHECK in sanitizer_stackdepot.cpp).
local csp = require "csp"

local kinds = { chan = csp.chan, xchan = csp.xchan }

local function select_recv_default(c)
  return csp.select{ csp.recv(c), default = true }
end

for kind, make in pairs(kinds) do
  describe("Go's TestChan with " .. kind, function()
    for _, cap in ipairs{ 0, 1, 2, 3, 7, 16, 100 } do
      it("cap " .. cap .. ": blocking, non-blocking, close, FIFO, many senders, len/cap #onethread", function()
        -- receive from an empty channel blocks; a non-blocking receive does not
        local c = make(cap)
        local recv1, recv2 = false, false
        csp.go(function() c:recv(); recv1 = true end)
        csp.go(function() c:recv(); recv2 = true end)
        csp.gosched()
        assert.is_false(recv1 or recv2)
        assert.equal(0, select_recv_default(c))
        c:send(0)
        c:send(0)
        csp.gosched()
        assert.is_true(recv1 and recv2)

        -- send to a full channel blocks; a non-blocking send does not
        c = make(cap)
        for i = 1, cap do c:send(i) end
        local sent = false
        csp.go(function() c:send(0); sent = true end)
        csp.gosched()
        assert.is_false(sent)
        assert.equal(0, csp.select{ csp.send(c, 0), default = true })
        c:recv()
        csp.gosched()
        assert.is_true(sent)

        -- the buffered values, then nil, false from a closed channel
        c = make(cap)
        for i = 1, cap do c:send(i) end
        c:close()
        for i = 1, cap do assert.equal(i, (c:recv())) end
        local v, ok = c:recv()
        assert.is_nil(v)
        assert.is_false(ok)

        -- close unblocks a receive
        c = make(cap)
        local done = csp.chan()
        csp.go(function() local x, okx = c:recv(); done:send(x == nil and okx == false) end)
        csp.gosched()
        c:close()
        assert.is_true(done:recv())

        -- 100 integers arrive uncorrupted in FIFO order
        c = make(cap)
        csp.go(function() for i = 1, 100 do c:send(i) end end)
        for i = 1, 100 do assert.equal(i, (c:recv())) end

        -- 4 senders x 1000 integers, 4 receivers: each value arrives 4 times
        c = make(cap)
        local P, L = 4, 1000
        local results = csp.chan()
        for _ = 1, P do csp.go(function() for i = 1, L do c:send(i) end end) end
        for _ = 1, P do
          csp.go(function()
            local got = {}
            for _ = 1, L do local x = c:recv(); got[x] = (got[x] or 0) + 1 end
            results:send(got)
          end)
        end
        local total = {}
        for _ = 1, P do
          for k, n in pairs(results:recv()) do total[k] = (total[k] or 0) + n end
        end
        for i = 1, L do assert.equal(P, total[i]) end

        -- len and cap
        c = make(cap)
        assert.equal(0, c:len())
        assert.equal(cap, c:cap())
        for i = 1, cap do c:send(i) end
        assert.equal(cap, c:len())
        assert.equal(cap, c:cap())
      end)
    end
  end)

  describe("Go's TestSelfSelect with " .. kind, function()
    for _, cap in ipairs{ 0, 10 } do
      it("cap " .. cap .. ": a select never receives its own send #onethread", function()
        local c = make(cap)
        local wg = csp.waitgroup()
        for p = 1, 2 do
          wg:add(1)
          csp.go(function()
            for i = 1, 1000 do
              if (p + i) % 2 == 0 then
                local idx, v = csp.select{ csp.send(c, p), csp.recv(c) }
                assert(not (cap == 0 and idx == 2 and v == p), "self receive")
              else
                local idx, v = csp.select{ csp.recv(c), csp.send(c, p) }
                assert(not (cap == 0 and idx == 1 and v == p), "self receive")
              end
            end
            wg:done()
          end)
        end
        wg:wait()
      end)
    end
  end)

  describe("Go's test/chan/nonblock.go with " .. kind, function()
    it("try_recv and try_send on empty, full and ready channels #onethread", function()
      for _, cap in ipairs{ 0, 1, 4 } do
        local c = make(cap)
        local _, ok, got = c:try_recv()
        assert.is_false(ok)
        assert.is_false(got)
        for i = 1, cap do assert.is_true(c:try_send(i)) end
        assert.is_false(c:try_send(-1))
        local sent = false
        csp.go(function() c:send(123); sent = true end)  -- parks: full or unbuffered
        csp.gosched()
        for i = 1, cap do assert.equal(i, (c:try_recv())) end
        local v
        v, ok, got = c:try_recv()
        assert.equal(123, v)
        assert.is_true(ok and got)
        csp.gosched()
        assert.is_true(sent)
      end
    end)
  end)
end

-- ---------------------------------------------------------------- the fuzzer

-- One random program: producers send tagged values (producer * 1e6 + seq) to random channels
-- through send, try_send and select over several channels; consumers receive through recv and
-- select over every channel until all are closed. Invariants: every value sent arrives exactly
-- once, values of one producer on one channel arrive in order at each consumer, len <= cap.
local function fuzz_once(make, seed, nprod, ncons, per)
  local rng = math.random
  math.randomseed(seed)
  local nch = rng(1, 4)
  local chans, caps = {}, {}
  for i = 1, nch do caps[i] = rng(0, 3); chans[i] = make(caps[i]) end
  local plans = {}
  for p = 1, nprod do
    local plan = {}
    for s = 1, per do plan[s] = { ch = rng(1, nch), how = rng(1, 3), alt = rng(1, nch) } end
    plans[p] = plan
  end
  local prod_done = csp.chan(nprod)
  for p = 1, nprod do
    csp.go(function()
      for s, step in ipairs(plans[p]) do
        local v, c = p * 1000000 + s, chans[step.ch]
        if step.how == 1 then
          c:send(v)
        elseif step.how == 2 then
          while not c:try_send(v) do csp.gosched() end
        else  -- select over two channels: the value goes to one of them
          local a = chans[step.alt]
          csp.select{ csp.send(c, v), csp.send(a, v) }
        end
        assert(c:len() <= caps[step.ch], "len above cap")
      end
      prod_done:send(true)
    end)
  end
  local seen, results = {}, csp.chan(ncons)
  for _ = 1, ncons do
    csp.go(function()
      local last, count, cases, open = {}, 0, {}, nch
      for i = 1, nch do cases[i] = csp.recv(chans[i]) end
      while open > 0 do
        local i, v, ok = csp.select(cases)
        if not ok then
          cases[i] = csp.recv(nil)  -- closed and drained: never ready again
          open = open - 1
        else
          assert(not seen[v], "value received twice")
          seen[v] = true
          count = count + 1
          local key = (v // 1000000) * 16 + i
          assert((last[key] or 0) < v % 1000000, "out of order on one channel")
          last[key] = v % 1000000
        end
      end
      results:send(count)
    end)
  end
  for _ = 1, nprod do prod_done:recv() end
  for i = 1, nch do chans[i]:close() end
  local total = 0
  for _ = 1, ncons do total = total + results:recv() end
  assert.equal(nprod * per, total)
end

for kind, make in pairs(kinds) do
  describe("invariant fuzzer with " .. kind, function()
    it("200 random programs keep every invariant #onethread", function()
      for seed = 1, 200 do fuzz_once(make, seed, 1 + seed % 4, 1 + seed % 3, 50) end
    end)
  end)
end

describe("invariant fuzzer across threads", function()
  it("producers in two threads, consumers in main's goroutines: every value once, in order", function()
    for seed = 1, 20 do
      math.randomseed(seed)
      local nch = math.random(1, 3)
      local chans = {}
      for i = 1, nch do chans[i] = csp.xchan(math.random(0, 3)) end
      local threads = {}
      for p = 1, 2 do
        threads[p] = csp.thread(function(cs, id, n, s)
          local c = require "csp"
          math.randomseed(s * 10 + id)
          for k = 1, n do
            local v, a, b = id * 1000000 + k, cs[math.random(#cs)], cs[math.random(#cs)]
            if k % 3 == 0 then a:send(v)
            else c.select{ c.send(a, v), c.send(b, v) } end
          end
        end, chans, p, 300, seed)
      end
      local seen, results = {}, csp.chan(2)
      for _ = 1, 2 do
        csp.go(function()
          local cases, open, count, last = {}, nch, 0, {}
          for i = 1, nch do cases[i] = csp.recv(chans[i]) end
          while open > 0 do
            local i, v, ok = csp.select(cases)
            if not ok then
              cases[i] = csp.recv(nil)
              open = open - 1
            else
              assert(not seen[v], "value received twice")
              seen[v] = true
              count = count + 1
              local key = (v // 1000000) * 16 + i
              assert((last[key] or 0) < v % 1000000, "out of order on one channel")
              last[key] = v % 1000000
            end
          end
          results:send(count)
        end)
      end
      threads[1]:join()
      threads[2]:join()
      for i = 1, nch do chans[i]:close() end
      local total = results:recv() + results:recv()
      assert.equal(600, total)
    end
  end)
end)
