-- select: API.md "select".
local csp = require "csp"
local util = require "spec.helpers.util"
local raises, in_go, pack = util.raises, util.in_go, util.pack

local function ready(v)
  local ch = csp.chan(1)
  ch:send(v)
  return ch
end

describe("csp.select", function()
  it("takes a ready recv case and returns i, v, ok", function()
    local a, b = csp.chan(), ready("b")
    assert.same({ n = 3, 2, "b", true }, pack(csp.select { csp.recv(a), csp.recv(b) }))
  end)

  it("receives nil values with ok = true", function()
    assert.same({ n = 3, 1, nil, true }, pack(csp.select { csp.recv(ready(nil)) }))
  end)

  it("takes a ready send case and returns i", function()
    local a, b = csp.chan(), csp.chan(1)
    local r = pack(csp.select { csp.recv(a), csp.send(b, "x") })
    assert.equal(2, r[1])
    assert.is_nil(r[2])
    assert.equal("x", b:recv())
  end)

  it("counts nil-channel cases in the indices and never takes them", function()
    local b = ready(5)
    assert.same({ n = 3, 3, 5, true },
      pack(csp.select { csp.recv(nil), csp.send(nil, 1), csp.recv(b) }))
    for _ = 1, 50 do
      assert.same({ n = 1, 0 }, pack(csp.select { csp.recv(nil), csp.send(nil, 1), default = true }))
    end
  end)

  it("gives 1, nil, false for a closed channel", function()
    local ch = csp.chan()
    ch:close()
    assert.same({ n = 3, 1, nil, false }, pack(csp.select { csp.recv(ch) }))
    local b = csp.chan(2)
    b:send(1)
    b:close()
    assert.same({ n = 3, 1, 1, true }, pack(csp.select { csp.recv(b) }))
    assert.same({ n = 3, 1, nil, false }, pack(csp.select { csp.recv(b) }))
  end)

  it("raises send on closed channel when a chosen send case's channel is closed", function()
    local ch = csp.chan(1)
    ch:close()
    assert.matches("send on closed channel", raises(csp.select, { csp.send(ch, 1) }), 1, true)
    assert.matches("send on closed channel",
      raises(csp.select, { csp.send(ch, 1), default = true }), 1, true)
    in_go(function()
      assert.matches("send on closed channel", raises(csp.select, { csp.send(ch, 1) }), 1, true)
    end)
  end)

  it("raises in a select blocked on a send case when the channel gets closed", function()
    local ch, other = csp.chan(), csp.chan()
    local res = csp.chan(1)
    csp.go(function()
      res:send(raises(csp.select, { csp.send(ch, 1), csp.recv(other) }))
    end)
    csp.gosched()
    ch:close()
    assert.matches("send on closed channel", res:recv(), 1, true)
    -- the select's other waiter is gone
    assert.is_false(other:try_send(1))
  end)

  it("wakes a select blocked on a recv case with nil, false on close", function()
    local ch, res = csp.chan(), csp.chan(1)
    csp.go(function() res:send(pack(csp.select { csp.recv(csp.chan()), csp.recv(ch) })) end)
    csp.gosched()
    ch:close()
    assert.same({ n = 3, 2, nil, false }, res:recv())
  end)
end)

describe("select handlers", function()
  it("a recv handler gets v, ok and its results are returned", function()
    local got
    local r = pack(csp.select {
      csp.recv(csp.chan(), function() error("wrong case") end),
      csp.recv(ready("v"), function(...)
        got = pack(...)
        return "r1", nil, "r3"
      end),
    })
    assert.same({ n = 2, "v", true }, got)
    assert.same({ n = 3, "r1", nil, "r3" }, r)
  end)

  it("a recv handler gets nil, false on a closed channel", function()
    local ch = csp.chan()
    ch:close()
    local got
    csp.select { csp.recv(ch, function(...) got = pack(...) end) }
    assert.same({ n = 2, nil, false }, got)
  end)

  it("a send handler gets nothing and its results are returned", function()
    local ch = csp.chan(1)
    local got
    local r = pack(csp.select { csp.send(ch, "x", function(...)
      got = pack(...)
      return 1, 2
    end) })
    assert.same({ n = 0 }, got)
    assert.same({ n = 2, 1, 2 }, r)
    assert.equal("x", ch:recv())
  end)

  it("a handler returning nothing makes select return nothing", function()
    local r = pack(csp.select { csp.recv(ready(1), function() end) })
    assert.equal(0, r.n)
  end)

  it("runs the handler of a case completed while blocked", function()
    local ch = csp.chan()
    csp.go(function() ch:send(9) end)
    local r = pack(csp.select { csp.recv(ch, function(v, ok) return v * 2, ok end) })
    assert.same({ n = 2, 18, true }, r)
  end)

  it("an error in a handler propagates to the caller", function()
    local ok, err = pcall(csp.select, { csp.recv(ready(1), function() error("in handler", 0) end) })
    assert.is_false(ok)
    assert.equal("in handler", err)
    assert.equal(1, (csp.select { csp.recv(ready(1)) }))
  end)

  it("handlers may block (they run after the select)", function()
    local a, b = csp.chan(), csp.chan()
    csp.go(function() b:send(a:recv() + 1) end)
    local r = csp.select { csp.recv(ready(1), function(v)
      a:send(v)
      return b:recv()
    end) }
    assert.equal(2, r)
  end)
end)

describe("select default", function()
  it("default = true returns 0 when nothing is ready", function()
    assert.same({ n = 1, 0 }, pack(csp.select { csp.recv(csp.chan()), default = true }))
    assert.same({ n = 1, 0 }, pack(csp.select { csp.send(csp.chan(), 1), default = true }))
  end)

  it("a default function's results are returned", function()
    local r = pack(csp.select { csp.recv(csp.chan()), default = function(...)
      assert.equal(0, select("#", ...))
      return "d", nil, 3
    end })
    assert.same({ n = 3, "d", nil, 3 }, r)
  end)

  it("is not taken when a case is ready", function()
    for _ = 1, 50 do
      assert.equal(1, (csp.select { csp.recv(ready(1)), default = true }))
    end
  end)

  it("an empty select with a default takes it", function()
    assert.same({ n = 1, 0 }, pack(csp.select { default = true }))
    assert.equal("x", csp.select { default = function() return "x" end })
  end)

  it("finds default and ordered among other keys, and in a case list with a hole", function()
    local t = { csp.recv(csp.chan()), note = "not an option", default = true, [10] = "far" }
    t[10] = nil
    assert.same({ n = 1, 0 }, pack(csp.select(t)))
    local a, b = csp.chan(1), csp.chan(1)
    a:send(1)
    b:send(2)
    local cases = { csp.recv(a), csp.recv(b), other = 1, ordered = true }
    assert.equal(1, (csp.select(cases)))
    assert.equal(2, (csp.select { csp.recv(csp.chan()), csp.recv(b), x = 0, default = true }))
  end)

  it("never lets another goroutine run", function()
    local ran = false
    csp.go(function() ran = true end)
    csp.select { csp.recv(csp.chan()), default = true }
    assert.is_false(ran)
    csp.gosched()
    assert.is_true(ran)
  end)

  it("works in a non-yieldable context inside a goroutine", function()
    local ch = csp.chan(1)
    in_go(function()
      table.sort({ 2, 1, 3 }, function(a, b)
        csp.select { csp.send(ch, a), csp.recv(ch), default = true }
        return a < b
      end)
    end)
  end)

  it("rejects a default that is neither a function nor a boolean, naming the field", function()
    local ok, err = pcall(csp.select, { csp.recv(csp.chan()), default = 1 })
    assert.is_false(ok)
    assert.matches("bad argument #1", err, 1, true)
    assert.matches("field 'default': function or boolean expected, got number", err, 1, true)
  end)

  it("ignores arguments after the case table", function()
    local ch = csp.chan(1)
    ch:send("v")
    assert.same({ n = 3, 1, "v", true }, pack(csp.select({ csp.recv(ch) }, "extra", 2)))
    assert.same({ n = 1, 0 }, pack(csp.select({ csp.recv(ch), default = true }, "extra")))
  end)

  it("rejects a case list that is not a table", function()
    local ok, err = pcall(csp.select, "cases")
    assert.is_false(ok)
    assert.matches("bad argument #1", err, 1, true)
    assert.matches("table expected, got string", err, 1, true)
  end)
end)

describe("select blocking", function()
  it("an empty select on a fresh main thread is a deadlock (no select waiter array yet)", function()
    -- a child process: its main record has never grown select waiters (UBSan: memset(NULL))
    local r = require("spec.helpers.run").run([[
      local csp = require "csp"
      local ok, err = pcall(csp.select, {})
      print(ok, (err:match("^[^\n]*")))
      print(pcall(csp.select, { csp.recv(nil), csp.send(nil, 1) }))
    ]])
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.truthy(r.stdout:find("^false\tfatal error: all goroutines are asleep %- deadlock!\nfalse\t"))
  end)

  it("main thread blocks until a goroutine completes a case", function()
    local a, b = csp.chan(), csp.chan()
    csp.go(function() b:send("late") end)
    assert.same({ n = 3, 2, "late", true }, pack(csp.select { csp.recv(a), csp.recv(b) }))
  end)

  it("a goroutine blocks on a send case until a receiver comes", function()
    local a, b = csp.chan(), csp.chan()
    local res = csp.chan(1)
    csp.go(function() res:send(pack(csp.select { csp.recv(a), csp.send(b, "v") })) end)
    csp.gosched()
    assert.equal("v", b:recv())
    assert.same({ n = 1, 2 }, res:recv())
  end)

  it("removes the waiters of the cases that did not fire", function()
    for _ = 1, 20 do
      local a, b, c = csp.chan(), csp.chan(), csp.chan()
      local res = csp.chan(1)
      csp.go(function()
        res:send(pack(csp.select { csp.recv(a), csp.recv(b), csp.send(c, 1) }))
      end)
      csp.gosched()
      assert.is_true(b:try_send("b"))
      assert.same({ n = 3, 2, "b", true }, res:recv())
      assert.is_false(a:try_send(1))
      assert.is_false(b:try_send(1))
      assert.same({ n = 3, nil, false, false }, pack(c:try_recv()))
    end
  end)

  it("with many cases fires the right one and unlinks the others", function()
    local n = 200
    local chans, cases = {}, {}
    for i = 1, n do
      chans[i] = csp.chan()
      cases[i] = csp.recv(chans[i])
    end
    for _, k in ipairs({ 1, 137, n }) do
      local res = csp.chan(1)
      csp.go(function() res:send(pack(csp.select(cases))) end)
      csp.gosched()
      chans[k]:send(k)
      assert.same({ n = 3, k, k, true }, res:recv())
      for i = 1, n do assert.is_false(chans[i]:try_send(0)) end
    end
  end)

  it("with no enabled case and no default blocks forever (deadlock detection)", function()
    local msg = raises(csp.select, {})
    assert.matches("all goroutines are asleep - deadlock!", msg, 1, true)
    assert.matches("goroutine 1 [select", msg, 1, true)
    msg = raises(csp.select, { csp.recv(nil), csp.send(nil, 1) })
    assert.matches("all goroutines are asleep - deadlock!", msg, 1, true)
    -- still usable
    assert.equal(1, (csp.select { csp.recv(ready(1)) }))
    -- Go's labels: nil cases park as [select]; only a select without cases is (no cases)
    local a = csp.go(function() csp.select { csp.recv(nil), csp.send(nil, 1) } end)
    local b = csp.go(function() csp.select {} end)
    local ch = csp.chan()
    msg = raises(ch.recv, ch)
    assert.matches("goroutine " .. a .. " [select]:", msg, 1, true)
    assert.matches("goroutine " .. b .. " [select (no cases)]:", msg, 1, true)
  end)

  it("raises attempt to block in a non-yieldable context inside a goroutine", function()
    local ch = csp.chan()
    in_go(function()
      local err = raises(table.sort, { 2, 1 }, function(a, b)
        csp.select { csp.recv(ch), csp.recv(nil) }
        return a < b
      end)
      assert.matches("attempt to block in a non-yieldable context", err, 1, true)
    end)
    assert.is_false(ch:try_send(1))
  end)

  it("works as a timeout with csp.after", function()
    local t0 = csp.now()
    local i = csp.select { csp.recv(csp.chan()), csp.recv(csp.after(0.05)) }
    assert.equal(2, i)
    assert.is_true(csp.now() - t0 >= 0.05)
  end)
end)

describe("select choice", function()
  it("is uniformly random among ready cases", function()
    local a, b = csp.chan(1), csp.chan(1)
    local n, count = 2000, { 0, 0 }
    for _ = 1, n do
      a:try_send(1)
      b:try_send(2)
      local i = csp.select { csp.recv(a), csp.recv(b) }
      count[i] = count[i] + 1
    end
    for i = 1, 2 do
      assert.is_true(count[i] > 0.35 * n and count[i] < 0.65 * n,
        ("case %d taken %d times of %d"):format(i, count[i], n))
    end
  end)

  it("is uniform over three ready cases, send cases included", function()
    local a, b, c = csp.chan(1), csp.chan(1), csp.chan(1)
    local n, count = 3000, { 0, 0, 0 }
    a:send(1)
    for _ = 1, n do
      local i = csp.select { csp.recv(a), csp.send(b, 1), csp.send(c, 1) }
      count[i] = count[i] + 1
      if i == 1 then a:send(1) elseif i == 2 then b:recv() else c:recv() end
    end
    for i = 1, 3 do
      assert.is_true(count[i] > 0.25 * n and count[i] < 0.42 * n,
        ("case %d taken %d times of %d"):format(i, count[i], n))
    end
  end)

  it("is uniform over ready cases wherever they sit among nil and blocked ones", function()
    -- 10 cases, more than select reads into its C stack array; ready ones at 2, 5 and 9
    local chans, cases, readyk = {}, {}, { 2, 5, 9 }
    for i = 1, 10 do
      chans[i] = csp.chan(1)
      cases[i] = csp.recv((i ~= 3 and i ~= 7) and chans[i] or nil)
    end
    local n, count = 3000, {}
    for _ = 1, n do
      for _, k in ipairs(readyk) do chans[k]:try_send(k) end
      local i, v, ok = csp.select(cases)
      assert.is_true(ok)
      assert.equal(i, v)
      count[i] = (count[i] or 0) + 1
      for _, k in ipairs(readyk) do chans[k]:try_recv() end
    end
    local taken = 0
    for _, k in ipairs(readyk) do
      taken = taken + (count[k] or 0)
      assert.is_true(count[k] > 0.25 * n and count[k] < 0.42 * n,
        ("case %d taken %d times of %d"):format(k, count[k] or 0, n))
    end
    assert.equal(n, taken)
  end)

  it("parked on many send cases, delivers the value of the one taken", function()
    -- 12 send cases: their values and the results sit above the cases on the parked stack
    local chans, cases = {}, {}
    for i = 1, 12 do
      chans[i] = csp.chan()
      cases[i] = csp.send(chans[i], "v" .. i)
    end
    local res = csp.chan(1)
    csp.go(function() res:send(pack(csp.select(cases))) end)
    csp.gosched()
    assert.equal("v11", chans[11]:recv())
    assert.same({ n = 1, 11 }, res:recv())
    for i = 1, 12 do assert.is_false(chans[i]:try_send(0)) end
  end)

  it("with ordered = true takes the first ready case in list order", function()
    local a, b, c = csp.chan(1), csp.chan(1), csp.chan(1)
    for _ = 1, 200 do
      b:try_send(2)
      c:try_send(3)
      assert.equal(2, (csp.select { csp.recv(a), csp.recv(b), csp.recv(c), ordered = true }))
      assert.equal(2, (csp.select { csp.recv(a), csp.recv(c), ordered = true }))
    end
  end)

  it("queues a blocked select's cases in random order", function()
    local ch = csp.chan()
    local res = csp.chan(1)
    local n, count = 400, { 0, 0 }
    for _ = 1, n do
      csp.go(function() res:send((csp.select { csp.recv(ch), csp.recv(ch) })) end)
      csp.gosched()
      ch:send(1)
      local i = res:recv()
      count[i] = count[i] + 1
    end
    for i = 1, 2 do
      assert.is_true(count[i] > 0.3 * n and count[i] < 0.7 * n,
        ("case %d completed %d times of %d"):format(i, count[i], n))
    end
  end)

  it("never pairs its own send case with its own recv case", function()
    local ch = csp.chan()
    for _ = 1, 50 do
      assert.same({ n = 1, 0 }, pack(csp.select { csp.send(ch, 1), csp.recv(ch), default = true }))
    end
    local res = csp.chan(1)
    for k = 1, 50 do
      csp.go(function() res:send(pack(csp.select { csp.send(ch, k), csp.recv(ch) })) end)
      csp.gosched()
      if k % 2 == 0 then
        assert.equal(k, ch:recv())
        assert.same({ n = 1, 1 }, res:recv())
      else
        ch:send(-k)
        assert.same({ n = 3, 2, -k, true }, res:recv())
      end
    end
  end)

  it("loses no value when many selects compete", function()
    local a, b, done = csp.chan(), csp.chan(), csp.chan()
    local per, senders = 500, 4
    for s = 1, senders do
      csp.go(function()
        for i = 1, per do
          csp.select { csp.send(a, s * 10000 + i), csp.send(b, s * 10000 + i) }
        end
        done:send(true)
      end)
    end
    local seen, finished, count = {}, 0, 0
    while finished < senders do
      local i, v = csp.select { csp.recv(a), csp.recv(b), csp.recv(done) }
      if i == 3 then
        finished = finished + 1
      else
        assert.is_nil(seen[v])
        seen[v] = true
        count = count + 1
      end
    end
    assert.equal(per * senders, count)
  end)
end)

describe("select case constructors", function()
  it("reject a non-channel", function()
    assert.is_false(pcall(function() csp.select { csp.recv({}), default = true } end))
    assert.is_false(pcall(function() csp.select { csp.send("x", 1), default = true } end))
  end)

  it("respect directional views", function()
    local ch = csp.chan(1)
    assert.matches("recv from send-only channel", raises(function()
      csp.select { csp.recv(ch:sender()), default = true }
    end), 1, true)
    assert.matches("send to receive-only channel", raises(function()
      csp.select { csp.send(ch:receiver(), 1), default = true }
    end), 1, true)
    assert.equal(1, (csp.select { csp.send(ch:sender(), 7) }))
    assert.same({ n = 3, 1, 7, true }, pack(csp.select { csp.recv(ch:receiver()) }))
  end)

  it("reject a non-table select argument", function()
    assert.is_false(pcall(csp.select, nil))
    assert.is_false(pcall(csp.select, 1))
  end)
end)
