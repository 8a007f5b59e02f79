-- TCP: API.md "I/O" (csp.net.listen, csp.net.dial, listener and conn methods), with real sockets
-- on 127.0.0.1. Every test ends the goroutines it starts: later files use csp.run.
local csp = require "csp"
local run = require "spec.helpers.run"
local util = require "spec.helpers.util"

local SLACK = 0.5

local function listen(addr)
  local ln = assert(csp.net.listen("tcp", addr or "127.0.0.1:0"))
  return ln, ln:addr()
end

-- A connected pair: the dialing side and the accepted side.
local function pair()
  local ln, addr = listen()
  local ch = csp.chan(1)
  csp.go(function() ch:send((ln:accept())) end)
  local c = assert(csp.net.dial("tcp", addr))
  local s = ch:recv()
  ln:close()
  return c, s
end

-- Runs f in a goroutine; returns a channel that gets f's results packed.
local function spawn(f, ...)
  local done = csp.chan(1)
  local args = table.pack(...)
  csp.go(function() done:send(table.pack(f(table.unpack(args, 1, args.n)))) end)
  return done
end

local quote, ENV, slurp = run.quote, run.env, run.slurp

-- Waits (parked, not spinning) until the file has a first line; returns it.
local function wait_line(path, limit)
  local t0 = csp.now()
  while csp.now() - t0 < (limit or 10) do
    local line = slurp(path):match("^([^\n]*)\n")
    if line then return line end
    csp.sleep(0.02)
  end
  error("no line in " .. path .. " after " .. (limit or 10) .. " s")
end

-- Starts a Lua chunk in the background with `ulimit -n nofile`; returns a handle whose stdin
-- (a pipe) the caller writes, and the path of its stdout.
local function background(code, nofile)
  local script, out = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "wb"))
  f:write(code)
  f:close()
  local p = assert(io.popen(("ulimit -n %d && %s exec timeout -k 2 30 lua5.4 %s >%s 2>&1"):format(
    nofile, ENV, quote(script), quote(out)), "w"))
  return { p = p, out = out, script = script }
end

local function finish(bg)
  bg.p:close()
  local out = slurp(bg.out)
  os.remove(bg.out)
  os.remove(bg.script)
  return out
end

local function hard_nofile()
  local p = io.popen("sh -c 'ulimit -Hn'")
  local v = p:read("l")
  p:close()
  return v == "unlimited" and math.huge or tonumber(v)
end

describe("csp.net.listen", function()
  it("picks a free port for port 0 and reports it in addr()", function()
    local ln, addr = listen()
    assert.matches("^127%.0%.0%.1:%d+$", addr)
    assert.is_true(tonumber(addr:match(":(%d+)$")) > 0)
    assert.matches("csp.listener", tostring(ln))
    ln:close()
  end)

  it("resolves localhost", function()
    local ln, addr = listen("localhost:0")
    assert.matches("^127%.0%.0%.1:%d+$", addr)
    ln:close()
  end)

  it("listens on IPv6 literals", function()
    local ln, err = csp.net.listen("tcp6", "[::1]:0")
    if not ln then
      pending("no IPv6 loopback here: " .. tostring(err))
      return
    end
    assert.matches("^%[::1%]:%d+$", ln:addr())
    local ch = spawn(function()
      local s = ln:accept()
      s:write("six\n")
      s:close()
    end)
    local c = assert(csp.net.dial("tcp", ln:addr()))
    assert.equal("six", c:read_line())
    assert.matches("^%[::1%]:%d+$", c:local_addr())
    c:close()
    ch:recv()
    ln:close()
  end)

  it("returns nil, err, code for a port in use", function()
    local ln, addr = listen()
    local ln2, err, code = csp.net.listen("tcp", addr)
    assert.is_nil(ln2)
    assert.equal("listen tcp " .. addr .. ": bind: address already in use", err)
    assert.equal("EADDRINUSE", code)
    ln:close()
  end)

  it("takes a service name for the port, as Go does (/etc/services, any case)", function()
    -- port 80: a refusal or a connection, whichever this machine gives, names 127.0.0.1:80
    local c, err = csp.net.dial("tcp", "127.0.0.1:HTTP")
    if c then
      assert.equal("127.0.0.1:80", c:remote_addr())
      c:close()
    else
      assert.matches("^dial tcp 127%.0%.0%.1:80: ", err)
    end
    assert.same({ nil, "dial tcp: lookup tcp/nosuchsvc: unknown port", "ENOENT" },
      { csp.net.dial("tcp", "127.0.0.1:nosuchsvc") })
    assert.same({ nil, "listen tcp: lookup tcp/nosuchsvc: unknown port", "ENOENT" },
      { csp.net.listen("tcp", "127.0.0.1:nosuchsvc") })
    local long = ("x"):rep(100)  -- longer than any service name: not looked up
    assert.same({ nil, "dial tcp: lookup tcp/" .. long .. ": unknown port", "ENOENT" },
      { csp.net.dial("tcp", "127.0.0.1:" .. long) })
  end)

  it("returns an error for a malformed address and raises for an unknown network", function()
    local ln, err, code = csp.net.listen("tcp", "127.0.0.1")
    assert.is_nil(ln)
    assert.equal("listen tcp: address 127.0.0.1: missing port in address", err)
    assert.equal("EINVAL", code)
    assert.same({ nil, "listen tcp: address 99999: invalid port", "EINVAL" },
      { csp.net.listen("tcp", "127.0.0.1:99999") })
    -- Go's parsePort: a sign is a number's ("-1" is no service name), an empty port is 0
    assert.same({ nil, "listen tcp: address -1: invalid port", "EINVAL" },
      { csp.net.listen("tcp", "127.0.0.1:-1") })
    assert.same({ nil, "dial tcp: address -1: invalid port", "EINVAL" },
      { csp.net.dial("tcp", "127.0.0.1:-1") })
    for _, a in ipairs({ "127.0.0.1:", "127.0.0.1:+0", "127.0.0.1:-0", ":", "" }) do
      local l = assert(csp.net.listen("tcp", a), a) -- a free port, as Go's ":0"
      assert.matches(":%d+$", l:addr())
      assert.is_true(tonumber(l:addr():match(":(%d+)$")) > 0)
      l:close()
    end
    assert.has_error(function() csp.net.listen("udp", "127.0.0.1:0") end)
    -- a NUL byte: C would read the address up to it (listening on, dialling 127.0.0.1:0)
    assert.same({ nil, "listen tcp: address with a NUL byte", "EINVAL" }, { csp.net.listen("tcp", "127.0.0.1:0\0x") })
    assert.same({ nil, "dial tcp: address with a NUL byte", "EINVAL" }, { csp.net.dial("tcp", "127.0.0.1:0\0x") })
    assert.matches("bad argument #1 .*unknown network %(a NUL byte",
      util.raises(csp.net.listen, "tcp\0x", "127.0.0.1:0"))
  end)

  it("close() wakes a goroutine blocked in accept with nil, err", function()
    local ln, addr = listen()
    local ch = spawn(function() return ln:accept() end)
    csp.gosched()
    assert.is_true(ln:close())
    local r = ch:recv()
    assert.is_nil(r[1])
    assert.equal("accept tcp " .. addr .. ": use of closed network connection", r[2])
    local c, err = ln:accept()
    assert.is_nil(c)
    assert.matches("use of closed network connection", err, 1, true)
    assert.is_nil((ln:close()))
  end)

  it("a blocked accept keeps the program alive until a client comes", function()
    local r = run.run([[
      local csp = require "csp"
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      local port = ln:addr():match(":(%d+)$")
      os.execute("(sleep 0.3; echo hi | nc -N 127.0.0.1 " .. port .. ") >/dev/null 2>&1 &")
      local c = assert(ln:accept())   -- main parks here: nothing else is alive
      print(c:read_line())
    ]], nil, 10)
    assert.equal(0, r.code, r.stderr)
    assert.equal("hi\n", r.stdout)
  end)

  it("an idle listener and idle conns do not hide a deadlock", function()
    local ln, addr = listen()
    local c = assert(csp.net.dial("tcp", addr))
    local s = ln:accept()
    s:write("x")
    assert.equal("x", c:read(1))  -- c now reads ahead, with nobody waiting
    local ok, err = pcall(function() csp.chan():recv() end)
    assert.is_false(ok)
    assert.matches("all goroutines are asleep - deadlock!", err, 1, true)
    c:close()
    s:close()
    ln:close()
  end)
end)

describe("csp.net.dial", function()
  it("connects; local and remote addresses mirror each other", function()
    local c, s = pair()
    assert.matches("^127%.0%.0%.1:%d+$", c:local_addr())
    assert.equal(c:local_addr(), s:remote_addr())
    assert.equal(c:remote_addr(), s:local_addr())
    assert.matches("csp.conn %(tcp 127", tostring(c))
    c:close()
    s:close()
  end)

  it("resolves names without blocking the loop", function()
    local ln, addr = listen()
    local ticks = 0
    local stop = csp.chan()
    local ticker = spawn(function()
      while not select(3, stop:try_recv()) do ticks = ticks + 1 csp.gosched() end
    end)
    local acc = spawn(function() return ln:accept() end)
    local c = assert(csp.net.dial("tcp", "localhost:" .. addr:match(":(%d+)$")))
    stop:close()
    ticker:recv()
    assert.is_true(ticks > 0)
    assert.equal("127.0.0.1", c:remote_addr():match("^(.*):"))
    c:close()
    acc:recv()[1]:close()
    ln:close()
  end)

  it("returns Go's error for a refused connection", function()
    local c, err, code = csp.net.dial("tcp", "127.0.0.1:1")
    assert.is_nil(c)
    assert.equal("dial tcp 127.0.0.1:1: connect: connection refused", err)
    assert.equal("ECONNREFUSED", code)
    local ln, addr = listen()
    ln:close()
    c, err, code = csp.net.dial("tcp", addr)
    assert.is_nil(c)
    assert.equal("dial tcp " .. addr .. ": connect: connection refused", err)
    assert.equal("ECONNREFUSED", code)
  end)

  it("returns a lookup error for an unknown name", function()
    local c, err, code = csp.net.dial("tcp", "nosuch.invalid:80", { timeout = 5 })
    assert.is_nil(c)
    assert.matches("^dial tcp", err)
    assert.is_string(code)
    if code ~= "ETIMEDOUT" then assert.matches("^dial tcp: lookup nosuch%.invalid: ", err) end
  end)

  it("returns nil, err for malformed addresses", function()
    local c, err, code = csp.net.dial("tcp", "localhost")
    assert.is_nil(c)
    assert.equal("dial tcp: address localhost: missing port in address", err)
    assert.equal("EINVAL", code)
    assert.matches("too many colons", select(2, csp.net.dial("tcp", "::1:80")), 1, true)
    assert.same({ nil, "dial tcp: missing address", "EINVAL" }, { csp.net.dial("tcp", "") })
    assert.same({ nil, "dial tcp 127.0.0.1:0: connect: connection refused", "ECONNREFUSED" },
      { csp.net.dial("tcp", "127.0.0.1:") }) -- port 0, as Go
    local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
    local port = ln:addr():match(":(%d+)$")
    ln:close()
    assert.same({ nil, "dial tcp :" .. port .. ": connect: connection refused", "ECONNREFUSED" },
      { csp.net.dial("tcp", ":" .. port) }) -- Go names the address as given without a host
    assert.has_error(function() csp.net.dial("tcp", "127.0.0.1:1", 5) end)
  end)

  it("opts.timeout ends a dial that has not completed with i/o timeout", function()
    local ln, addr = listen()
    -- The deadline is checked before the loop polls, so a connect in flight loses the race.
    for _ = 1, 5 do
      local c, err, code = csp.net.dial("tcp", addr, { timeout = 1e-9 })
      assert.is_nil(c)
      assert.equal("dial tcp " .. addr .. ": i/o timeout", err)
      assert.equal("ETIMEDOUT", code)
    end
    local c = assert(csp.net.dial("tcp", addr, { timeout = 5 }))
    c:close()
    ln:close()
  end)

  it("a huge or infinite opts.timeout means no deadline, not an expired one", function()
    local ln, addr = listen()
    for _, t in ipairs({ math.huge, 1e308, 2 ^ 53, 2 ^ 63, 1e10 }) do
      local c = assert(csp.net.dial("tcp", addr, { timeout = t }))
      c:close()
    end
    ln:close()
  end)

  it("dials from many goroutines at once", function()
    local ln, addr = listen()
    local n = 50
    local server = spawn(function()
      for _ = 1, n do
        local s = ln:accept()
        csp.go(function()
          local line = s:read_line()
          s:write(line .. "!\n")
          s:close()
        end)
      end
    end)
    local wg, got = csp.waitgroup(), {}
    for i = 1, n do
      wg:go(function()
        local c = assert(csp.net.dial("tcp", addr))
        c:write(i .. "\n")
        got[i] = c:read_line()
        c:close()
      end)
    end
    wg:wait()
    server:recv()
    for i = 1, n do assert.equal(i .. "!", got[i]) end
    ln:close()
  end)
end)

describe("conn reads", function()
  it("read(n) returns up to n buffered bytes, read() what is buffered, then EOF", function()
    local c, s = pair()
    s:write("hello world")
    s:close()
    assert.equal("hello", c:read(5))
    assert.equal("", c:read(0))
    local rest = {}
    while true do
      local chunk, err, code = c:read()
      if not chunk then
        assert.equal("EOF", err)
        assert.equal("EOF", code)
        break
      end
      rest[#rest + 1] = chunk
    end
    assert.equal(" world", table.concat(rest))
    assert.same({ nil, "EOF", "EOF" }, { c:read(1) })
    c:close()
  end)

  it("read_line strips \\n and \\r\\n and returns a last line without newline", function()
    local c, s = pair()
    s:write("one\ntwo\r\n\nlast")
    s:close()
    assert.equal("one", c:read_line())
    assert.equal("two", c:read_line())
    assert.equal("", c:read_line())
    assert.equal("last", c:read_line())
    assert.same({ nil, "EOF", "EOF" }, { c:read_line() })
    c:close()
  end)

  it("lines() iterates until EOF; lines split across writes are joined", function()
    local c, s = pair()
    local w = spawn(function()
      s:write("al")
      csp.sleep(0.01)
      s:write("pha\nbe")
      csp.sleep(0.01)
      s:write("ta\ngamma\n")
      s:close()
    end)
    local got = {}
    for line in c:lines() do got[#got + 1] = line end
    assert.same({ "alpha", "beta", "gamma" }, got)
    w:recv()
    c:close()
  end)

  it("a line over the limit returns nil, 'line too long' and later lines are intact", function()
    local c, s = pair()
    local long = string.rep("x", 70000)
    local w = spawn(function()
      s:write("before\n" .. long .. "\nafter\n")
      s:write(string.rep("y", 11) .. "\n" .. string.rep("z", 10) .. "\nend")
      s:close()
    end)
    assert.equal("before", c:read_line())
    assert.same({ nil, "line too long", "ELINETOOLONG" }, { c:read_line() })
    assert.equal("after", c:read_line())
    assert.equal(65536, c:set_max_line(10))
    assert.same({ nil, "line too long", "ELINETOOLONG" }, { c:read_line() })
    assert.equal(string.rep("z", 10), c:read_line())
    assert.equal("end", c:read_line())
    w:recv()
    c:close()
  end)

  it("a too-long line arriving in pieces is dropped up to its newline", function()
    local c, s = pair()
    c:set_max_line(100)
    local w = spawn(function()
      for _ = 1, 20 do
        s:write(string.rep("p", 50))
        csp.sleep(0.001)
      end
      s:write("\nnext\n")
      s:close()
    end)
    assert.same({ nil, "line too long", "ELINETOOLONG" }, { c:read_line() })
    assert.equal("next", c:read_line())
    w:recv()
    c:close()
  end)

  it("lines() ends at a too-long line", function()
    local c, s = pair()
    c:set_max_line(4)
    s:write("ok\ntoolong\nmore\n")
    s:close()
    local got = {}
    for line in c:lines() do got[#got + 1] = line end
    assert.same({ "ok" }, got)
    c:close()
  end)

  it("reading a reset connection returns ECONNRESET", function()
    local c, s = pair()
    c:write("unread data\n")
    csp.sleep(0.05)
    s:close()  -- closing with unread data sends a reset
    local _, err, code = c:read()
    assert.equal("ECONNRESET", code)
    assert.equal("read tcp " .. c:local_addr() .. "->" .. c:remote_addr() .. ": connection reset by peer", err)
    c:close()
  end)

  it("close() wakes a goroutine blocked in read", function()
    local c, s = pair()
    local r = spawn(function() return c:read_line() end)
    csp.gosched()
    c:close()
    local got = r:recv()
    assert.is_nil(got[1])
    assert.matches("^read tcp .*: use of closed network connection$", got[2])
    assert.same({ nil, got[2], "EBADF" }, { c:read() })
    s:close()
  end)

  it("blocking in read shows as IO wait in the dump", function()
    local c, s = pair()
    local r = spawn(function() return c:read() end)
    csp.gosched()
    assert.matches("%[IO wait%]", csp.dump())
    s:write("x")
    assert.equal("x", r:recv()[1])
    c:close()
    s:close()
  end)
end)

describe("conn writes", function()
  it("write returns the byte count; a large write arrives whole", function()
    local c, s = pair()
    local big = string.rep("0123456789abcdef", 1 << 18)  -- 4 MiB
    local reader = spawn(function()
      local parts, n = {}, 0
      while n < #big do
        local chunk = assert(s:read())
        parts[#parts + 1] = chunk
        n = n + #chunk
      end
      return table.concat(parts)
    end)
    assert.equal(#big, c:write(big))
    assert.equal(0, c:write(""))
    assert.is_true(reader:recv()[1] == big)
    c:close()
    s:close()
  end)

  it("write(a, b, ...) sends the pieces in order, in one go or queued, and counts them all", function()
    local c, s = pair()
    -- Small pieces leave in one writev; big ones fill the socket: the kernel takes part of them
    -- and the rest (from inside a piece) is queued, counted in the same result.
    local small = { "alpha ", "", "beta", 42, "\n" }
    local big = {}
    for i = 1, 6 do big[i] = string.rep(string.char(96 + i), 700001 + i) end
    local want = table.concat(small) .. table.concat(big) .. table.concat(big, "", 1, 3)
    local reader = spawn(function()
      local parts, n = {}, 0
      while n < #want do
        local chunk = assert(s:read())
        parts[#parts + 1] = chunk
        n = n + #chunk
      end
      return table.concat(parts)
    end)
    assert.equal(#table.concat(small), c:write(table.unpack(small)))
    assert.equal(#table.concat(big), c:write(table.unpack(big)))
    assert.equal(3 * 700001 + 6, c:write(big[1], big[2], big[3]))
    assert.is_true(reader:recv()[1] == want)
    assert.equal(0, c:write("", ""))
    c:close()
    local v, err, code = c:write("x", "y")
    assert.is_nil(v)
    assert.matches("use of closed network connection", err, 1, true)
    assert.equal("EBADF", code)
    s:close()
  end)

  it("a slow reader slows its writer (backpressure), and nothing is lost", function()
    local c, s = pair()
    local chunk = string.rep("w", 1 << 20)
    local written, stalled = 0, false
    local writer = spawn(function()
      for _ = 1, 32 do written = written + assert(c:write(chunk)) end
      c:close_write()
    end)
    -- The peer reads nothing yet: the writer must stall well before 32 MiB.
    for _ = 1, 50 do
      csp.sleep(0.005)
      if writer:len() == 0 and written < 32 * #chunk then stalled = true end
    end
    assert.is_true(stalled)
    assert.is_true(written < 32 * #chunk, "writer never blocked")
    local total = 0
    while true do
      local got = s:read()
      if not got then break end
      total = total + #got
    end
    writer:recv()
    assert.equal(32 * #chunk, total)
    c:close()
    s:close()
  end)

  it("concurrent writers never interleave inside one write", function()
    local c, s = pair()
    local wg = csp.waitgroup()
    local piece = { a = string.rep("a", 300000), b = string.rep("b", 300000) }
    for k, v in pairs(piece) do
      wg:go(function() for _ = 1, 3 do assert(c:write(v)) end end, k)
    end
    local reader = spawn(function()
      local parts = {}
      for _ = 1, 1e6 do
        local got = s:read()
        if not got then break end
        parts[#parts + 1] = got
      end
      return table.concat(parts)
    end)
    wg:wait()
    c:close()
    local all = reader:recv()[1]
    assert.equal(6 * 300000, #all)
    for run_ in all:gmatch("a+") do assert.equal(0, #run_ % 300000) end
    for run_ in all:gmatch("b+") do assert.equal(0, #run_ % 300000) end
    s:close()
  end)

  it("writing to a closed peer returns EPIPE (SIGPIPE does not kill us)", function()
    local c, s = pair()
    s:close()
    local err, code
    for _ = 1, 200 do
      local n
      n, err, code = c:write("data\n")
      if not n then break end
      csp.sleep(0.002)
    end
    assert.is_true(code == "EPIPE" or code == "ECONNRESET", tostring(code))
    assert.matches("^write tcp " .. c:local_addr():gsub("%.", "%%.") .. "%->", err)
    c:close()
  end)

  it("close_write half-closes: the peer sees EOF and can still answer", function()
    local c, s = pair()
    local srv = spawn(function()
      local data = {}
      for line in s:lines() do data[#data + 1] = line end
      s:write("got " .. #data .. "\n")
      s:close()
    end)
    c:write("a\nb\nc\n")
    assert.is_true(c:close_write())
    assert.is_true(c:close_write())
    assert.equal("got 3", c:read_line())
    assert.equal("EOF", select(2, c:read()))
    local n, err, code = c:write("late")
    assert.is_nil(n)
    assert.matches("broken pipe", err, 1, true)
    assert.equal("EPIPE", code)
    srv:recv()
    c:close()
  end)

  it("close_write while a write is blocked on a peer not reading: shut at once, the write fails (Go)", function()
    local c, s = pair()
    local big = string.rep("x", 32 * 1024 * 1024)  -- far over the socket buffers
    local res = spawn(function() return c:write(big) end)
    csp.gosched()  -- the writer is parked now: its bytes wait in libuv's queue
    assert.is_true(c:close_write())
    local r = res:recv()
    assert.is_nil(r[1])
    assert.matches("broken pipe", r[2], 1, true)
    assert.equal("EPIPE", r[3])
    -- the peer gets what went out, then the end
    local got = 0
    while true do
      local chunk = s:read(1024 * 1024)
      if not chunk then break end
      got = got + #chunk
    end
    assert.is_true(got > 0 and got < #big, tostring(got))
    c:close()
    s:close()
  end)

  it("closed conns return errors; close works as a to-be-closed variable", function()
    local c, s = pair()
    do
      local cc <close> = c
      assert.equal(1, cc:write("x"))
    end
    assert.same({ nil, "write tcp " .. c:local_addr() .. "->" .. c:remote_addr() ..
      ": use of closed network connection", "EBADF" }, { c:write("y") })
    assert.matches("closed", tostring(c))
    assert.is_nil((c:close()))
    assert.equal("x", s:read())
    s:close()
  end)
end)

describe("conn deadlines", function()
  it("a timed-out write returns nil, 'i/o timeout', 'ETIMEDOUT', n and the rest is never sent", function()
    local c, s = pair()
    local big = string.rep("x", 20 * 1024 * 1024)
    c:set_write_deadline(csp.now() + 0.2)
    local t0 = csp.now()
    local ok, err, code, n = c:write(big)  -- the peer reads nothing: the kernel buffers fill
    assert.is_nil(ok)
    assert.equal("i/o timeout", err)
    assert.equal("ETIMEDOUT", code)
    assert.is_true(math.type(n) == "integer" and n >= 0 and n < #big, tostring(n))
    assert.is_true(csp.now() - t0 < 0.2 + SLACK)
    -- the peer gets exactly n bytes, then the end: nothing of the rest comes later
    local total = 0
    while true do
      local d = s:read()
      if not d then break end
      total = total + #d
    end
    assert.equal(n, total)
    -- the conn is unusable for writing, even with the deadline lifted
    c:set_write_deadline(nil)
    assert.is_nil((c:write("more")))
    c:close()
    s:close()
  end)

  it("a write that times out waiting for its turn reports 0 bytes", function()
    local c, s = pair()
    local big = string.rep("y", 20 * 1024 * 1024)
    c:set_write_deadline(csp.now() + 0.2)
    local first = spawn(function() return c:write(big) end)
    csp.gosched()
    local ok, err, code, n = c:write("second")
    assert.same({ nil, "i/o timeout", "ETIMEDOUT", 0 }, { ok, err, code, n })
    local r = first:recv()
    assert.equal("i/o timeout", r[2])
    c:close()
    s:close()
  end)

  it("an expired read returns nil, 'i/o timeout'; nil clears the deadline", function()
    local c, s = pair()
    c:set_read_deadline(csp.now() + 0.05)
    local t0 = csp.now()
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { c:read_line() })
    local d = csp.now() - t0
    assert.is_true(d >= 0.045 and d < 0.05 + SLACK, "elapsed " .. d)
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { c:read() })  -- still expired
    c:set_read_deadline(nil)
    s:write("late\n")
    assert.equal("late", c:read_line())
    c:close()
    s:close()
  end)

  it("huge deadlines never expire: reads and writes wait for their data", function()
    for _, t in ipairs({ math.huge, 1e308, 2 ^ 53 }) do
      local c, s = pair()
      c:set_deadline(csp.now() + t)
      s:set_deadline(t)
      local r = spawn(function() return c:read_line() end)
      csp.gosched()
      assert.equal(6, s:write("hello\n"))
      assert.equal("hello", r:recv()[1])
      assert.equal(3, c:write("ok\n"))
      assert.equal("ok", s:read_line())
      c:close()
      s:close()
    end
  end)

  it("a deadline set while a goroutine is blocked applies to it", function()
    local c, s = pair()
    local r = spawn(function() return c:read() end)
    csp.gosched()
    c:set_deadline(csp.now() + 0.02)
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { table.unpack(r:recv(), 1, 3) })
    c:set_deadline(csp.now() - 1)  -- the past: at once
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { c:read() })
    c:close()
    s:close()
  end)

  it("an expired deadline fails a read even with data buffered, as Go's Read; read(0) is ''", function()
    local c, s = pair()
    s:write("ready\nsteady\n")
    assert.equal("r", c:read(1))
    c:set_read_deadline(csp.now() - 1)
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { c:read_line() })
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { c:read(1) })
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { c:read() })
    assert.equal("", c:read(0))
    local n = 0
    for _ in c:lines() do n = n + 1 end
    assert.equal(0, n, "lines() ends at the timeout")
    c:set_read_deadline(nil)
    assert.equal("eady", c:read_line(), "nothing was consumed")
    assert.equal("steady", c:read_line())
    c:close()
    s:close()
  end)

  it("a write deadline ends a write the peer does not take", function()
    local c, s = pair()
    c:set_write_deadline(csp.now() + 0.1)
    local chunk = string.rep("z", 1 << 20)
    local err, code
    for _ = 1, 200 do
      local n
      n, err, code = c:write(chunk)
      if not n then break end
    end
    assert.equal("i/o timeout", err)
    assert.equal("ETIMEDOUT", code)
    c:close()
    s:close()
  end)
end)

describe("descriptor limits", function()
  it("accept under EMFILE does not spin and recovers when descriptors free up", function()
    local srv = background([[
      local csp = require "csp"
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      io.write(ln:addr(), "\n") io.flush()
      local held, released = {}, false
      csp.go(function()
        while true do
          local c = ln:accept()
          if c then
            if released then c:write("ok\n") c:close()
            else c:write("held\n") held[#held + 1] = c end
          end
        end
      end)
      local cpu0, t0 = os.clock(), csp.now()
      csp.stdin:read_line()  -- the client has flooded us
      io.write(("held %d cpu %.3f wall %.3f\n"):format(#held, os.clock() - cpu0, csp.now() - t0))
      io.flush()
      released = true
      for _, c in ipairs(held) do c:close() end
      csp.stdin:read_line()  -- EOF: done
      os.exit(0)
    ]], 32)
    local addr = wait_line(srv.out)
    local wg, held, dropped = csp.waitgroup(), 0, 0
    local conns = {}
    for i = 1, 80 do  -- spread over a second: connections keep arriving at the limit
      wg:go(function()
        csp.sleep(i * 0.0125)
        local c = csp.net.dial("tcp", addr, { timeout = 5 })
        if not c then dropped = dropped + 1 return end
        conns[i] = c
        c:set_read_deadline(csp.now() + 1)
        local line = c:read_line()
        if line == "held" then held = held + 1 else dropped = dropped + 1 end
      end)
    end
    wg:wait()
    srv.p:write("release\n")
    srv.p:flush()
    for _, c in pairs(conns) do c:close() end
    -- recovered: new connections are served
    local served = 0
    for _ = 1, 100 do
      local c = csp.net.dial("tcp", addr, { timeout = 5 })
      if c then
        c:set_read_deadline(csp.now() + 2)
        local line = c:read_line()
        c:close()
        if line == "ok" then served = served + 1 end
        if served == 3 then break end
      end
      csp.sleep(0.02)
    end
    local out = finish(srv)
    local nheld, cpu, wall = out:match("held (%d+) cpu ([%d.]+) wall ([%d.]+)")
    assert.is_truthy(nheld, out)
    assert.is_true(tonumber(nheld) > 0 and tonumber(nheld) < 32, out)
    assert.equal(80, held + dropped)
    assert.is_true(dropped > 0, "no connection was refused at the limit")
    assert.is_true(tonumber(wall) >= 0.9, out)
    assert.is_true(tonumber(cpu) < 0.5 * tonumber(wall), "accept spun: " .. out)
    assert.equal(3, served, out)
  end)

  it("10,000 concurrent connections in one process", function()
    local hard = hard_nofile()
    local n = math.min(10000, hard - 200)
    if n < 10000 then
      print(("(descriptor hard limit %s: testing %d connections)"):format(hard, n))
    end
    local srv = background([[
      local csp = require "csp"
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      io.write(ln:addr(), "\n") io.flush()
      local open, peak = 0, 0
      csp.go(function()
        while true do
          local c = assert(ln:accept())
          open = open + 1
          if open > peak then peak = open end
          csp.go(function()
            for line in c:lines() do c:write(line .. "\n") end
            c:close()
            open = open - 1
          end)
        end
      end)
      csp.stdin:read_line()
      io.write("peak ", peak, "\n")
      os.exit(0)
    ]], n + 100)
    local addr = wait_line(srv.out)
    local cli = background(([[
      local csp = require "csp"
      local n, addr = %d, %q
      local wg, conns, ok = csp.waitgroup(), {}, 0
      for i = 1, n do
        wg:go(function()
          local c = assert(csp.net.dial("tcp", addr, { timeout = 15 }))
          conns[i] = c
          assert(c:write("ping " .. i .. "\n"))
          if c:read_line() == "ping " .. i then ok = ok + 1 end
        end)
      end
      wg:wait()  -- all n are open at once here
      for i = 1, n do conns[i]:close() end
      print("ok " .. ok)
    ]]):format(n, addr), n + 100)
    local got = finish(cli)
    srv.p:write("stop\n")
    local out = finish(srv)
    assert.equal("ok " .. n .. "\n", got)
    assert.equal("peak " .. n, out:match("peak %d+"), out)
  end)
end)

describe("writes split into pieces (uv_buf_t lengths are 32-bit)", function()
  -- CSP_BUFMAX lowers the piece size from 1 GiB to 7 bytes, so a small string takes the path of
  -- a string of 4 GiB or more: try_write of one piece, then uv_write of many.
  it("tcp, a pipe, a file and exec's stdin get every byte", function()
    local out = os.tmpname()
    local code = [[
      local csp = require "csp"
      local s = {}
      for i = 1, 3000 do s[i] = tostring(i) end
      s = table.concat(s, ",")
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      local got = csp.chan(1)
      csp.go(function()
        local c = ln:accept()
        local t = {}
        while true do local d = c:read() if not d then break end t[#t + 1] = d end
        got:send(table.concat(t))
      end)
      local c = assert(csp.net.dial("tcp", ln:addr()))
      assert(c:write(s) == #s)
      c:close_write()
      assert(got:recv() == s, "tcp")
      local r = csp.exec("wc", { "-c" }, { stdin = s })
      assert(tonumber(r.stdout) == #s, "exec stdin")
      assert(csp.stdout:write(s) == #s)
    ]]
    local r = run.run(code, { CSP_BUFMAX = "7" })
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    local expect = {}
    for i = 1, 3000 do expect[i] = tostring(i) end
    expect = table.concat(expect, ",")
    assert.equal(#expect, #r.stdout)
    assert.equal(expect, r.stdout)  -- stdout of run.run is a file
    local p = assert(io.popen(("env %s CSP_BUFMAX=7 lua5.4 -e %s | wc -c"):format(ENV,
      quote("local csp = require 'csp'; assert(csp.stdout:write(string.rep('z', 100000)) == 100000)"))))
    assert.equal("100000", p:read("a"):match("%d+"))
    p:close()
    os.remove(out)
  end)
end)
