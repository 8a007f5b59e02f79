-- Channels: API.md "Channels", plus the blocking rules of "Goroutines" as they apply to
-- channel operations. The top level of a test is the (non-yieldable) main thread.
local csp = require "csp"
local util = require "spec.helpers.util"
local raises, in_go, pack = util.raises, util.in_go, util.pack

-- A misuse error must say which argument is wrong and that a channel was expected.
local function assert_bad_chan_arg(msg)
  assert.is_truthy(msg:find("bad argument #1", 1, true) or msg:find("bad self", 1, true), msg)
  assert.is_truthy(msg:lower():find("chan", 1, true), msg)
end

describe("csp.chan", function()
  it("is unbuffered by default", function()
    local ch = csp.chan()
    assert.equal(0, ch:cap())
    assert.equal(0, ch:len())
    assert.equal(0, #ch)
    assert.is_false(ch:try_send(1))
  end)

  it("takes a capacity", function()
    local ch = csp.chan(3)
    assert.equal(3, ch:cap())
    assert.equal(0, ch:len())
    assert.equal(3, csp.chan(3.0):cap())
    assert.equal(0, csp.chan(0):cap())
  end)

  it("raises makechan: size out of range for a negative capacity", function()
    assert.matches("makechan: size out of range", raises(csp.chan, -1), 1, true)
    assert.matches("makechan: size out of range", raises(csp.chan, -1000), 1, true)
    assert.matches("makechan: size out of range", raises(csp.chan, math.mininteger), 1, true)
  end)

  it("raises makechan: size out of range for a capacity too large to allocate", function()
    assert.matches("makechan: size out of range", raises(csp.chan, 1 << 40), 1, true)
    assert.matches("makechan: size out of range", raises(csp.chan, math.maxinteger), 1, true)
  end)

  it("raises a bad-argument error for a fractional or non-number capacity", function()
    for _, bad in ipairs({ 1.5, 0.25, "x", {}, true }) do
      local msg = raises(csp.chan, bad)
      assert.matches("bad argument #1", msg, 1, true)
    end
  end)

  it("works with large capacities", function()
    for _, n in ipairs({ 65534, 65535, 65536, 100000 }) do
      local ch = csp.chan(n)
      assert.equal(n, ch:cap())
      for i = 1, n do
        if not ch:try_send(i) then assert.is_true(ch:try_send(i), "try_send " .. i) end
      end
      assert.is_false(ch:try_send(0))
      assert.equal(n, #ch)
      for i = 1, n do
        local v, ok = ch:recv()
        if v ~= i or ok ~= true then assert.equal(i, v) end
      end
      assert.equal(0, ch:len())
    end
  end)

  it("compares equal only to itself", function()
    local a, b = csp.chan(), csp.chan()
    assert.is_true(a == a)
    assert.is_false(a == b)
    local t = { [a] = 1, [b] = 2 }
    assert.equal(1, t[a])
    assert.equal(2, t[b])
  end)
end)

describe("channel methods on a non-channel", function()
  local ch = csp.chan(1)
  local others = { {}, "x", 42, true, io.stdout, coroutine.create(print) }

  for _, name in ipairs({ "send", "recv", "close", "len", "cap", "range", "try_send",
                          "try_recv", "sender", "receiver", "base" }) do
    it("ch." .. name .. " raises naming the argument", function()
      local m = ch[name]
      assert.is_function(m)
      for _, other in ipairs(others) do
        assert_bad_chan_arg(raises(m, other, 1))
      end
    end)
  end

  it("a method called with : on a foreign object raises too", function()
    local fake = { send = ch.send }
    assert_bad_chan_arg(raises(function() fake:send(1) end))
  end)
end)

describe("send and recv", function()
  it("keeps buffered values in FIFO order", function()
    local ch = csp.chan(5)
    for i = 1, 5 do ch:send(i) end
    assert.equal(5, #ch)
    for i = 1, 5 do
      local v, ok = ch:recv()
      assert.equal(i, v)
      assert.is_true(ok)
    end
  end)

  it("keeps order across the ring's wrap-around with parked senders", function()
    local ch = csp.chan(3)
    local n = 40
    csp.go(function()
      for i = 1, n do ch:send(i % 5 == 0 and nil or i) end
      ch:close()
    end)
    local i = 0
    while true do
      local v, ok = ch:recv()
      if not ok then break end
      i = i + 1
      assert.equal(i % 5 == 0 and nil or i, v)
      if i % 7 == 0 then csp.gosched() end -- let the buffer fill up again
    end
    assert.equal(n, i)
  end)

  it("passes any Lua value, nil included, keeping identity", function()
    local t, f, co = {}, function() end, coroutine.create(print)
    local vals = { n = 8, 1, "s", t, f, co, false, nil, 2.5 }
    local ch = csp.chan(8)
    for i = 1, vals.n do ch:send(vals[i]) end
    for i = 1, vals.n do
      local r = pack(ch:recv())
      assert.equal(2, r.n)
      assert.equal(vals[i], r[1])
      assert.is_true(r[2])
    end
  end)

  it("sends nil through an unbuffered channel, main receiving", function()
    local ch = csp.chan()
    csp.go(function() ch:send(nil) end)
    local r = pack(ch:recv())
    assert.equal(2, r.n)
    assert.is_nil(r[1])
    assert.is_true(r[2])
  end)

  it("unbuffered: main receives from a goroutine", function()
    local ch = csp.chan()
    csp.go(function() for i = 1, 3 do ch:send(i * 10) end end)
    assert.equal(10, ch:recv())
    assert.equal(20, ch:recv())
    assert.equal(30, ch:recv())
  end)

  it("unbuffered: main sends to a goroutine and blocks until received", function()
    local ch, got = csp.chan(), csp.chan(10)
    csp.go(function()
      for _ = 1, 3 do got:send((ch:recv())) end
    end)
    for i = 1, 3 do ch:send(i) end
    -- each send returned only after its value was taken
    assert.is_true(got:len() >= 2)
    local r = {}
    for _ = 1, 3 do r[#r + 1] = got:recv() end
    assert.same({ 1, 2, 3 }, r)
  end)

  it("buffered: main blocks on a full channel until a goroutine drains it", function()
    local ch = csp.chan(2)
    ch:send(1)
    ch:send(2)
    local drained = false
    csp.go(function()
      assert.equal(1, ch:recv())
      drained = true
    end)
    ch:send(3) -- blocks until the goroutine took 1
    assert.is_true(drained)
    assert.equal(2, #ch)
    assert.equal(2, ch:recv())
    assert.equal(3, ch:recv())
  end)

  it("goroutine to goroutine ping-pong", function()
    local ping, pong, done = csp.chan(), csp.chan(), csp.chan()
    local n = 2000
    csp.go(function()
      for i = 1, n do ping:send(i) end
      ping:close()
    end)
    csp.go(function()
      for v in ping:range() do pong:send(v * 2) end
      pong:close()
    end)
    csp.go(function()
      local sum = 0
      for v in pong:range() do sum = sum + v end
      done:send(sum)
    end)
    assert.equal(n * (n + 1), done:recv())
  end)

  it("serves blocked senders first-in first-out", function()
    local ch = csp.chan()
    for i = 1, 5 do
      csp.go(function() ch:send(i) end)
      csp.gosched() -- let it park before the next one starts
    end
    for i = 1, 5 do assert.equal(i, ch:recv()) end
  end)

  it("serves blocked senders FIFO behind a full buffer", function()
    local ch = csp.chan(2)
    ch:send(1)
    ch:send(2)
    for i = 3, 6 do
      csp.go(function() ch:send(i) end)
      csp.gosched()
    end
    assert.equal(2, #ch)
    for i = 1, 6 do assert.equal(i, ch:recv()) end
    assert.equal(0, #ch)
  end)

  it("serves blocked receivers first-in first-out", function()
    local ch, res = csp.chan(), csp.chan(5)
    for i = 1, 5 do
      csp.go(function() res:send({ i, (ch:recv()) }) end)
      csp.gosched()
    end
    for i = 1, 5 do ch:send(i * 100) end
    local seen = {}
    for _ = 1, 5 do
      local r = res:recv()
      seen[r[1]] = r[2]
    end
    assert.same({ 100, 200, 300, 400, 500 }, seen)
  end)

  it("len stays 0 on an unbuffered channel with blocked senders", function()
    local ch = csp.chan()
    csp.go(function() ch:send(1) end)
    csp.gosched()
    assert.equal(0, #ch)
    assert.equal(0, ch:len())
    assert.equal(1, ch:recv())
  end)

  -- A parked plain send hands its value over from its stack top: extra arguments and a missing
  -- value must not shift which value that is, whoever parked (main or a goroutine) and however
  -- it is taken (recv, try_recv, range, a select, a buffered slot freed by a receive).
  it("a parked send gives its value, not an extra argument, to every kind of receiver", function()
    local ch, got = csp.chan(), {}
    csp.go(function()
      ch:send("a", "extra", "more")
      ch:send()
      ch:send("c", "x")
      ch:send("d", nil, "y")
      ch:send("e", "z")
      ch:close()
    end)
    csp.gosched()
    got[1] = pack(ch:recv())
    csp.gosched()
    got[2] = pack(ch:try_recv())
    csp.gosched()
    got[3] = pack(csp.select { csp.recv(ch) })
    csp.gosched()
    for v in ch:range() do got[#got + 1] = v end
    assert.same({ n = 2, "a", true }, got[1])
    assert.same({ n = 3, nil, true, true }, got[2])
    assert.same({ n = 3, 1, "c", true }, got[3])
    assert.same({ "d", "e" }, { got[4], got[5] })
  end)

  it("main parked in a send gives its value, not an extra argument", function()
    local ch, got = csp.chan(), csp.chan(1)
    csp.go(function()
      csp.gosched()
      got:send(pack(ch:recv()))
      csp.gosched()
      got:send(pack(ch:recv()))
    end)
    ch:send("m", "extra")
    assert.same({ n = 2, "m", true }, got:recv())
    ch:send()
    assert.same({ n = 2, nil, true }, got:recv())
  end)

  it("a full buffer takes a parked sender's value, not its extra argument", function()
    local ch = csp.chan(1)
    ch:send(1)
    csp.go(function() ch:send(2, "extra") end)
    csp.gosched()
    assert.equal(1, ch:recv())
    assert.same({ n = 2, 2, true }, pack(ch:recv()))
  end)
end)

describe("close", function()
  it("gives nil, false after close and drain, with buffered values still received", function()
    local ch = csp.chan(3)
    ch:send("a")
    ch:send(nil)
    ch:close()
    assert.equal(2, #ch)
    assert.same({ n = 2, "a", true }, pack(ch:recv()))
    assert.same({ n = 2, nil, true }, pack(ch:recv()))
    for _ = 1, 3 do
      assert.same({ n = 2, nil, false }, pack(ch:recv()))
    end
  end)

  it("raises send on closed channel, on main and in a goroutine", function()
    local ch = csp.chan(1)
    ch:close()
    assert.matches("send on closed channel", raises(ch.send, ch, 1), 1, true)
    assert.matches("send on closed channel", raises(ch.try_send, ch, 1), 1, true)
    in_go(function()
      assert.matches("send on closed channel", raises(ch.send, ch, 1), 1, true)
      assert.matches("send on closed channel", raises(ch.try_send, ch, 1), 1, true)
    end)
  end)

  it("raises send on closed channel in senders blocked when it gets closed", function()
    local ch, res = csp.chan(), csp.chan(3)
    for _ = 1, 3 do
      csp.go(function() res:send(raises(ch.send, ch, "x")) end)
    end
    csp.gosched()
    ch:close()
    for _ = 1, 3 do assert.matches("send on closed channel", res:recv(), 1, true) end
    -- a full buffered channel too
    local b = csp.chan(1)
    b:send(1)
    csp.go(function() res:send(raises(b.send, b, 2)) end)
    csp.gosched()
    b:close()
    assert.matches("send on closed channel", res:recv(), 1, true)
    assert.equal(1, b:recv())
    assert.is_nil(b:recv())
  end)

  it("raises send on closed channel on a main thread blocked in send", function()
    local ch = csp.chan()
    csp.go(function() ch:close() end)
    assert.matches("send on closed channel", raises(ch.send, ch, 1), 1, true)
    -- the runtime is still usable
    local c2 = csp.chan()
    csp.go(function() c2:send(7) end)
    assert.equal(7, c2:recv())
  end)

  it("raises close of closed channel", function()
    local ch = csp.chan()
    ch:close()
    assert.matches("close of closed channel", raises(ch.close, ch), 1, true)
    in_go(function()
      assert.matches("close of closed channel", raises(ch.close, ch), 1, true)
    end)
  end)

  it("wakes every blocked receiver with nil, false", function()
    local ch, res = csp.chan(), csp.chan(4)
    for _ = 1, 4 do csp.go(function() res:send(pack(ch:recv())) end) end
    csp.gosched()
    ch:close()
    for _ = 1, 4 do assert.same({ n = 2, nil, false }, res:recv()) end
  end)

  it("wakes a main thread blocked in recv", function()
    local ch = csp.chan()
    csp.go(function() ch:close() end)
    assert.same({ n = 2, nil, false }, pack(ch:recv()))
  end)
end)

describe("len, # and cap", function()
  it("count buffered values", function()
    local ch = csp.chan(4)
    assert.equal(4, ch:cap())
    for i = 1, 4 do
      ch:send(i)
      assert.equal(i, ch:len())
      assert.equal(i, #ch)
    end
    ch:recv()
    assert.equal(3, #ch)
    ch:close()
    assert.equal(3, #ch)
    assert.equal(4, ch:cap())
  end)
end)

describe("range", function()
  it("iterates until closed and drained", function()
    local ch = csp.chan(10)
    for i = 1, 5 do ch:send(i) end
    ch:close()
    local r = {}
    for v in ch:range() do r[#r + 1] = v end
    assert.same({ 1, 2, 3, 4, 5 }, r)
  end)

  it("blocks between values and ends on close, main ranging over a goroutine", function()
    local ch = csp.chan()
    csp.go(function()
      for i = 1, 3 do ch:send(i) end
      ch:close()
    end)
    local r = {}
    for v in ch:range() do r[#r + 1] = v end
    assert.same({ 1, 2, 3 }, r)
  end)

  it("works in a goroutine", function()
    local ch, out = csp.chan(), csp.chan()
    csp.go(function()
      local s = 0
      for v in ch:range() do s = s + v end
      out:send(s)
    end)
    for i = 1, 10 do ch:send(i) end
    ch:close()
    assert.equal(55, out:recv())
  end)

  it("on an already closed empty channel does not iterate", function()
    local ch = csp.chan()
    ch:close()
    for _ in ch:range() do error("iterated") end
  end)
end)

describe("try_send and try_recv", function()
  it("try_send returns true if sent, false if it would block", function()
    local ch = csp.chan(1)
    assert.same({ n = 1, true }, pack(ch:try_send("a")))
    assert.same({ n = 1, false }, pack(ch:try_send("b")))
    assert.equal("a", ch:recv())
    local u = csp.chan()
    assert.same({ n = 1, false }, pack(u:try_send(1)))
  end)

  it("try_send hands off to a parked receiver without letting it run", function()
    local ch = csp.chan()
    local got
    csp.go(function() got = pack(ch:recv()) end)
    csp.gosched()
    assert.is_true(ch:try_send(nil))
    assert.is_nil(got) -- non-blocking: the receiver has not run yet
    csp.gosched()
    assert.same({ n = 2, nil, true }, got)
  end)

  it("try_recv returns v, ok, true or nil, false, false", function()
    local ch = csp.chan(2)
    assert.same({ n = 3, nil, false, false }, pack(ch:try_recv()))
    ch:send("x")
    ch:send(nil)
    assert.same({ n = 3, "x", true, true }, pack(ch:try_recv()))
    assert.same({ n = 3, nil, true, true }, pack(ch:try_recv()))
    assert.same({ n = 3, nil, false, false }, pack(ch:try_recv()))
    ch:close()
    assert.same({ n = 3, nil, false, true }, pack(ch:try_recv()))
  end)

  it("try_recv takes from a parked sender without letting it run", function()
    local ch = csp.chan()
    local after = false
    csp.go(function()
      ch:send("v")
      after = true
    end)
    csp.gosched()
    assert.same({ n = 3, "v", true, true }, pack(ch:try_recv()))
    assert.is_false(after)
    assert.same({ n = 3, nil, false, false }, pack(ch:try_recv()))
    csp.gosched()
    assert.is_true(after)
  end)

  it("a full channel with a parked sender refills on try_recv", function()
    local ch = csp.chan(1)
    ch:send(1)
    csp.go(function() ch:send(2) end)
    csp.gosched()
    assert.same({ n = 3, 1, true, true }, pack(ch:try_recv()))
    assert.equal(1, #ch)
    assert.same({ n = 3, 2, true, true }, pack(ch:try_recv()))
  end)
end)

describe("directional views", function()
  it("sender() can send and close but not receive", function()
    local ch = csp.chan(2)
    local s = ch:sender()
    s:send(1)
    assert.is_true(s:try_send(2))
    assert.equal(2, s:len())
    assert.equal(2, #s)
    assert.equal(2, s:cap())
    assert.matches("recv from send-only channel", raises(s.recv, s), 1, true)
    assert.matches("recv from send-only channel", raises(s.try_recv, s), 1, true)
    assert.matches("recv from send-only channel", raises(function()
      for _ in s:range() do end
    end), 1, true)
    s:close()
    assert.same({ n = 3, 1, true, true }, pack(ch:try_recv()))
  end)

  it("receiver() can receive but not send or close", function()
    local ch = csp.chan(2)
    local r = ch:receiver()
    ch:send(1)
    assert.equal(1, r:recv())
    ch:send(2)
    assert.same({ n = 3, 2, true, true }, pack(r:try_recv()))
    assert.matches("send to receive-only channel", raises(r.send, r, 1), 1, true)
    assert.matches("send to receive-only channel", raises(r.try_send, r, 1), 1, true)
    assert.matches("close of receive-only channel", raises(r.close, r), 1, true)
    ch:close()
    for _ in r:range() do error("iterated") end
  end)

  it("are views of the same channel: base() gives the channel", function()
    local ch = csp.chan()
    local s, r = ch:sender(), ch:receiver()
    assert.is_true(rawequal(ch:base(), ch))
    assert.is_true(s:base() == ch)
    assert.is_true(r:base() == ch)
    assert.is_true(rawequal(s:base(), r:base()))
    assert.is_false(s == ch)
    assert.is_false(r == ch)
    assert.is_false(csp.chan():base() == ch)
    csp.go(function() s:send("through the view") end)
    assert.equal("through the view", r:recv())
  end)

  it("views block and wake like the channel", function()
    local ch = csp.chan()
    local s, r = ch:sender(), ch:receiver()
    csp.go(function() s:send(1); s:close() end)
    local got = {}
    for v in r:range() do got[#got + 1] = v end
    assert.same({ 1 }, got)
  end)
end)

describe("blocking in a non-yieldable context inside a goroutine", function()
  local msg = "attempt to block in a non-yieldable context"

  it("raises from a table.sort comparator", function()
    local ch = csp.chan(1)
    in_go(function()
      local err = raises(table.sort, { 3, 1, 2 }, function(a, b)
        ch:recv()
        return a < b
      end)
      assert.matches(msg, err, 1, true)
      err = raises(string.gsub, "abc", "%w", function() ch:send(1); ch:send(2) end)
      assert.matches(msg, err, 1, true)
    end)
  end)

  it("leaves the channel intact and the goroutine usable", function()
    local ch = csp.chan()
    local res = csp.chan(1)
    csp.go(function()
      pcall(table.sort, { 2, 1 }, function(a, b) ch:recv(); return a < b end)
      res:send((ch:recv())) -- the failed recv left no waiter behind
    end)
    csp.gosched()
    ch:send(42)
    assert.equal(42, res:recv())
    assert.is_false(ch:try_send(1))
  end)

  it("allows non-blocking calls there", function()
    local ch = csp.chan(4)
    in_go(function()
      table.sort({ 3, 1, 2 }, function(a, b)
        ch:try_send(a)
        ch:try_recv()
        return a < b
      end)
    end)
  end)

  it("is allowed on the main thread (it drives the scheduler)", function()
    local ch = csp.chan()
    csp.go(function() for i = 1, 10 do ch:send(i) end end)
    local t = { 3, 1, 2 }
    local n = 0
    table.sort(t, function(a, b)
      if n < 10 then n = n + 1; ch:recv() end
      return a < b
    end)
    assert.same({ 1, 2, 3 }, t)
    for _ = n + 1, 10 do ch:recv() end
  end)
end)
