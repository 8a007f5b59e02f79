-- Requests (wait.c's csp_Req): a goroutine parked on a filesystem call, a name lookup or
-- connect, a process or a stream write, whose wait ends otherwise (a panic that cuts main's
-- wait, a deadline, a close, its coroutine closed behind the scheduler's back, the end of the
-- script) while the request is in flight or done but not taken back. Each case runs in a child
-- process; under `make asan` the child checks its own leaks at exit (LeakSanitizer), so a
-- request nobody frees fails the case, and a freed one touched again fails it too.
local run = require "spec.helpers.run"

-- Runs code (csp loaded as `csp`) in a child; returns its stdout. env: extra variables.
local function child(code, env)
  return run.checked("local csp = require 'csp'\n" .. code, env)
end

-- Lua for the child: a FIFO at `fifo` whose readfile holds the only pool thread
-- (UV_THREADPOOL_SIZE=1) until `unblock()`; calls issued meanwhile wait in libuv's queue, in order.
local BLOCK = [[
local fifo = os.tmpname()
os.remove(fifo)
assert(os.execute("mkfifo " .. fifo))
local held = csp.chan(1)
csp.go(function() held:send(assert(csp.fs.readfile(fifo))) end)
csp.gosched()  -- the readfile is on the pool thread, in open(2) until a writer comes
local function unblock()
  local f = assert(io.open(fifo, "w"))  -- the reader is waiting: this does not block
  f:write("data")
  f:close()
  assert(held:recv() == "data")
  os.remove(fifo)
end
-- A wait that must not be woken by a stale request: the pool (FIFO) completes every call issued
-- before this one first.
local function later_wait()
  local ch = csp.chan()
  csp.go(function() assert(csp.fs.stat(".")) ch:send("mine") end)
  assert(ch:recv() == "mine", "a stale request woke the wrong wait")
end
]]
local POOL1 = { UV_THREADPOOL_SIZE = "1" }

-- A goroutine that keeps the loop busy for a while, so that pool calls finishing meanwhile are
-- all seen by the next poll, in the order they finished.
local BUSY = [[
local function busy(secs)
  csp.go(function() local t = os.clock() while os.clock() - t < (secs or 0.05) do end end)
end
]]

describe("a filesystem request", function()
  it("outlives main's wait cut by a panic, and does not wake main's next wait", function()
    local out = child(BLOCK .. [[
      csp.go(function() error("boom") end)
      local ok, err = pcall(csp.fs.dirstat, ".")  -- queued behind the FIFO
      assert(not ok and err:find("boom"), err)
      unblock()
      later_wait()
      print(#assert(csp.fs.readfile("/etc/hostname")) > 0)
    ]], POOL1)
    assert.are.equal("true\n", out)
  end)

  it("done but not taken back when a panic cuts main's wait is freed", function()
    local out = child(BUSY .. [[
      csp.go(function() csp.fs.readfile("/etc/hostname") error("boom") end)
      csp.gosched()  -- its readfile goes first on the pool
      busy()         -- both calls finish while it runs: one poll readies that goroutine, then main
      local ok, err = pcall(csp.fs.readfile, "/etc/hostname")
      assert(not ok and err:find("boom"), err)
      print(csp.fs.stat(".").type)
    ]], POOL1)
    assert.are.equal("dir\n", out)
  end)

  it("of a goroutine whose coroutine is closed is freed when it completes", function()
    local out = child([[
      local co
      csp.go(function() co = coroutine.running() csp.fs.dirstat(".") end)
      csp.gosched()
      assert(coroutine.close(co))
      local ok, err = pcall(csp.run)  -- the call completes; its goroutine cannot run
      assert(not ok and err:find("its coroutine was closed"), err)
      print(csp.fs.stat(".").type)
    ]])
    assert.are.equal("dir\n", out)
  end)

  it("of a goroutine resumed outside the scheduler is freed when it completes", function()
    local out = child(BLOCK .. [[
      local co
      csp.go(function() co = coroutine.running() csp.fs.stat(".") end)
      csp.gosched()
      local ok, err = coroutine.resume(co)
      assert(ok == false and err:find("resumed outside the scheduler"), err)
      unblock()
      later_wait()
      print("ok")
    ]], POOL1)
    assert.are.equal("ok\n", out)
  end)

  it("done but not taken back when the script ends is freed", function()
    local out = child(BUSY .. [[
      csp.go(function() csp.fs.readfile("/etc/hostname") end)  -- starts once main parks
      busy(0.2)
      csp.sleep(0.01)  -- after the busy goroutine, one poll: the timer readies main before the
      print("ok")      -- readfile's completion readies its goroutine, which never runs
    ]])
    assert.are.equal("ok\n", out)
  end)
end)

describe("a name lookup", function()
  local SERVE = [[
    local ln = assert(csp.net.listen("tcp4", "127.0.0.1:0"))
    local port = ln:addr():match(":(%d+)$")
    csp.go(function() while true do local c = ln:accept() if not c then return end c:close() end end)
  ]]

  it("outlives main's dial cut by a panic, and does not wake main's next wait", function()
    local out = child(SERVE .. BLOCK .. [[
      csp.go(function() error("boom") end)
      local ok, err = pcall(csp.net.dial, "tcp4", "localhost:" .. port)  -- the lookup is queued
      assert(not ok and err:find("boom"), err)
      unblock()
      later_wait()
      assert(csp.net.dial("tcp4", "localhost:" .. port)):close()
      ln:close()
      print("ok")
    ]], POOL1)
    assert.are.equal("ok\n", out)
  end)

  it("cancelled by a dial's deadline is freed by its callback", function()
    local out = child(SERVE .. BLOCK .. [[
      print(select(2, csp.net.dial("tcp4", "localhost:" .. port, { timeout = 0.05 })))
      unblock()  -- the lookup never ran (uv_cancel): it comes back cancelled, and goes
      later_wait()
      assert(csp.net.dial("tcp4", "localhost:" .. port)):close()
      ln:close()
    ]], POOL1)
    assert.matches("^dial tcp4 localhost:%d+: i/o timeout\tETIMEDOUT\n$", out)
  end)

  it("of a goroutine whose coroutine is closed is freed when it completes", function()
    local out = child(SERVE .. [[
      local co
      csp.go(function() co = coroutine.running() csp.net.dial("tcp4", "localhost:" .. port) end)
      csp.gosched()
      assert(coroutine.close(co))
      local ok, err = pcall(csp.run)
      assert(not ok and err:find("its coroutine was closed"), err)
      ln:close()
      print("ok")
    ]])
    assert.are.equal("ok\n", out)
  end)
end)

describe("a process wait", function()
  it("cut by a panic forgets the process once it ends", function()
    local out = child([[
      local pidfile = os.tmpname()
      local p = assert(csp._spawn("sh", { "-c", "echo $$ > " .. pidfile .. "; exec sleep 100" }))
      csp.go(function() error("boom") end)
      local ok, err = pcall(p.wait, p)
      assert(not ok and err:find("boom"), err)
      assert(not pcall(p.wait, p), "a second wait raises")
      local pid
      for _ = 1, 1000 do  -- the shell has started when it wrote its pid
        local f = io.open(pidfile)
        pid = f and f:read("n")
        if f then f:close() end
        if pid then break end
        csp.sleep(0.01)
      end
      os.remove(pidfile)
      p:kill()
      -- its pid stays in /proc until the loop reaps it; then the process is forgotten
      for _ = 1, 1000 do
        local f = io.open("/proc/" .. pid .. "/stat")
        if not f then break end
        f:close()
        csp.sleep(0.01)
      end
      -- the loop turns while this one runs: the close callbacks of the forgotten one's pipes
      print(assert(csp.exec("sh", { "-c", "echo after" })).stdout)
    ]])
    assert.are.equal("after\n\n", out)
  end)

  it("of a goroutine whose coroutine is closed forgets the process once it ends", function()
    local out = child([[
      local co
      csp.go(function() co = coroutine.running() csp._spawn("true"):wait() end)
      csp.gosched()
      assert(coroutine.close(co))
      local ok, err = pcall(csp.run)
      assert(not ok and err:find("its coroutine was closed"), err)
      print("ok")
    ]])
    assert.are.equal("ok\n", out)
  end)
end)

describe("an unwaited process", function()
  it("still running at the end of the script has its output buffers freed", function()
    -- 100000 bytes do not fit in the pipe: the marker file exists once csp has read some
    local out = child([[
      local mark = os.tmpname()
      os.remove(mark)
      local p = assert(csp._spawn("sh", { "-c",
        "head -c 100000 /dev/zero; head -c 100000 /dev/zero >&2; : > " .. mark .. "; exec sleep 100" }))
      for _ = 1, 2000 do
        local f = io.open(mark)
        if f then f:close() break end
        csp.sleep(0.01)
      end
      assert(os.remove(mark), "the process never got past its output")
      p:kill()
      print("ok")
    ]])
    assert.are.equal("ok\n", out)
  end)
end)

describe("a stream write", function()
  local PAIR = [[
    local ln = assert(csp.net.listen("tcp4", "127.0.0.1:0"))
    local acc = csp.chan(1)
    csp.go(function() acc:send(ln:accept()) end)
    local c = assert(csp.net.dial("tcp4", ln:addr()))
    local peer = acc:recv()
    local big = ("x"):rep(32 << 20)  -- more than the socket buffers take: the write parks
  ]]

  it("in flight when a panic cuts main's wait keeps the slot until it completes", function()
    local out = child(PAIR .. [[
      csp.go(function() error("boom") end)
      local ok, err = pcall(c.write, c, big)
      assert(not ok and err:find("boom"), err)
      local got = csp.chan(1)
      csp.go(function()
        local n = 0
        while n < #big + 5 do n = n + #assert(peer:read()) end
        got:send(n)
      end)
      print(c:write("hello"), got:recv() == #big + 5)  -- goes once the old write is out
      c:close() peer:close() ln:close()
    ]])
    assert.are.equal("5\ttrue\n", out)
  end)

  it("in flight when its conn is closed is taken back from its writer", function()
    local out = child(PAIR .. [[
      local res = csp.chan(1)
      csp.go(function() res:send({ c:write(big) }) end)
      csp.gosched()  -- the writer parks on its write
      c:close()
      local r = res:recv()
      print(r[1], r[2], r[3])
      peer:close() ln:close()
    ]])
    assert.matches("^nil\twrite tcp [%d.:]+%->[%d.:]+: use of closed network connection\tEBADF\n$", out)
  end)

  it("of a file stream closed in flight frees the stream once the pool is done", function()
    -- the child's stdout is a regular file: its writes go to the thread pool
    local out = child([[
      local res = csp.chan(1)
      csp.go(function() res:send({ csp.stdout:write(("y"):rep(16 << 20)) }) end)
      csp.gosched()
      assert(csp.stdout:close())
      local r = res:recv()
      io.stderr:write(tostring(r[1]), " ", r[2], "\n")
      assert(r[1] == nil and r[2] == "write /dev/stdout: file already closed", r[2])
      assert(csp.fs.stat("."))  -- after the write on the one pool thread: the stream is gone
    ]], POOL1)
    assert.is_true(#out <= 16 << 20)
  end)
end)
