-- csp.exec: API.md "I/O (libuv)" exec row. The process runs on libuv: the caller parks (main runs
-- the scheduler inline), stdout and stderr come back whole, opts.stdin is fed to it, opts.ctx
-- kills it on cancel. Failures to start return nil, Go's message, the code; bad arguments raise.
local csp = require "csp"
local util = require "spec.helpers.util"
local raises, in_go = util.raises, util.in_go

-- Every test, from main and from a goroutine.
local function both(name, f)
  it(name .. " (main)", f)
  it(name .. " (goroutine)", function() in_go(f) end)
end

describe("csp.exec", function()
  both("captures stdout and the exit status", function()
    local r = assert(csp.exec("echo", { "hello" }))
    assert.are.same({ status = 0, stdout = "hello\n", stderr = "" }, r)
  end)

  both("returns a failing status as a result, not an error", function()
    local r = assert(csp.exec("false", {}))
    assert.are.equal(1, r.status)
    assert.is_nil(r.signal)
  end)

  both("captures stderr apart from stdout", function()
    local r = assert(csp.exec("sh", { "-c", "echo out; echo err >&2; exit 3" }))
    assert.are.same({ status = 3, stdout = "out\n", stderr = "err\n" }, r)
  end)

  it("passes arguments verbatim, args may be omitted", function()
    local r = assert(csp.exec("printf", { "[%s]", "a b", "", "$HOME", "*" }))
    assert.are.equal("[a b][][$HOME][*]", r.stdout)
    assert.are.equal("", assert(csp.exec("true")).stdout)
  end)

  both("feeds opts.stdin to the process", function()
    assert.are.equal("abc\ndef", assert(csp.exec("cat", {}, { stdin = "abc\ndef" })).stdout)
    assert.are.equal("", assert(csp.exec("cat", {}, { stdin = "" })).stdout)
    -- without opts.stdin the process reads /dev/null: cat ends at once
    assert.are.equal("", assert(csp.exec("cat")).stdout)
  end)

  it("streams large input and output at the same time", function()
    local big = ("0123456789abcdef"):rep(65536 * 2)  -- 2 MiB: more than the pipes hold
    local r = assert(csp.exec("cat", {}, { stdin = big }))
    assert.are.equal(#big, #r.stdout)
    assert.is_true(r.stdout == big)
  end)

  both("captures 10 MB of output", function()
    local r = assert(csp.exec("head", { "-c", "10000000", "/dev/zero" }))
    assert.are.equal(0, r.status)
    assert.are.equal(10000000, #r.stdout)
    assert.are.equal(("\0"):rep(100), r.stdout:sub(-100))
  end)

  it("fails, rather than grows without bound, past 64 MiB of output", function()
    local r, err, code = csp.exec("head", { "-c", tostring(65 * 1024 * 1024), "/dev/zero" })
    assert.is_nil(r)
    assert.are.equal('exec: "head": output larger than 64 MiB', err)
    assert.are.equal("ENOBUFS", code)
    -- exactly 64 MiB still fits
    r = assert(csp.exec("head", { "-c", tostring(64 * 1024 * 1024), "/dev/zero" }))
    assert.are.equal(64 * 1024 * 1024, #r.stdout)
  end)

  both("returns Go's error for a program that does not exist", function()
    local r, err, code = csp.exec("csp-no-such-program", { "x" })
    assert.is_nil(r)
    assert.are.equal('exec: "csp-no-such-program": executable file not found in $PATH', err)
    assert.are.equal("ENOENT", code)
    assert.same({ nil, "exec: no command", "ENOENT" }, { csp.exec("", {}) }) -- Go's words
    r, err, code = csp.exec("./csp/no/such", {})
    assert.is_nil(r)
    assert.are.equal("fork/exec ./csp/no/such: no such file or directory", err)
    assert.are.equal("ENOENT", code)
  end)

  it("runs in opts.cwd with opts.env", function()
    assert.are.equal("/\n", assert(csp.exec("pwd", {}, { cwd = "/" })).stdout)
    local r = assert(csp.exec("/bin/sh", { "-c", 'echo "$A,$B"' }, { env = { "A=1", "B=x y" } }))
    assert.are.equal("1,x y\n", r.stdout)
    local _, err, code = csp.exec("pwd", {}, { cwd = "/csp/no/such/dir" })
    assert.are.equal("chdir /csp/no/such/dir: no such file or directory", err)
    assert.are.equal("ENOENT", code)
  end)

  both("kills the process when opts.ctx is cancelled", function()
    local ctx = csp.with_timeout(csp.background(), 0.1)
    local t0 = csp.now()
    local r = assert(csp.exec("sleep", { "10" }, { ctx = ctx }))
    assert.is_true(csp.now() - t0 < 5, "not killed")
    assert.are.equal(9, r.signal)
    assert.are.equal(-1, r.status)
    assert.are.equal("context deadline exceeded", ctx:err())
  end)

  it("kills on an explicit cancel from another goroutine, keeping what was captured", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    -- the process says it is ready on stdout, then waits; the canceller waits for a file it made
    local tmp = os.tmpname()
    os.remove(tmp)
    csp.go(function()
      while not csp.fs.stat(tmp) do csp.sleep(0.01) end
      cancel()
    end)
    local r = assert(csp.exec("sh", { "-c", "echo ready; touch " .. tmp .. "; exec sleep 10" },
      { ctx = ctx }))
    os.remove(tmp)
    assert.are.equal(9, r.signal)
    assert.are.equal("ready\n", r.stdout)
  end)

  it("leaves a process whose context is not cancelled alone", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    local r = assert(csp.exec("sh", { "-c", "exit 4" }, { ctx = ctx }))
    assert.are.equal(4, r.status)
    assert.is_nil(r.signal)
    cancel()  -- after the process ended: nothing to kill, nothing raises
    csp.gosched()
    -- a background context has no done channel: no watcher at all
    assert.are.equal(0, assert(csp.exec("true", {}, { ctx = csp.background() })).status)
    assert.are.equal(1, csp.numgoroutine())
  end)

  it("does not start a process under a context already cancelled", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    cancel()
    local tmp = os.tmpname()
    os.remove(tmp)
    local r, err, code = csp.exec("touch", { tmp }, { ctx = ctx })
    assert.is_nil(r)
    assert.are.equal("context canceled", err)
    assert.are.equal("ECANCELED", code)
    r, err, code = csp.exec("touch", { tmp }, { ctx = csp.with_timeout(csp.background(), -1) })
    assert.is_nil(r)
    assert.are.equal("context deadline exceeded", err)
    assert.are.equal("ETIMEDOUT", code)
    assert.is_nil(io.open(tmp))
  end)

  it("runs processes concurrently without blocking the scheduler", function()
    -- a reader and a writer meet on a FIFO: this finishes only if both run at once
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute("mkfifo " .. fifo))
    local ctx = csp.with_timeout(csp.background(), 10)  -- a hang fails instead of hanging
    local results = csp.chan(10)
    csp.go(function() results:send(csp.exec("cat", { fifo }, { ctx = ctx })) end)
    csp.go(function()
      results:send(csp.exec("sh", { "-c", "echo through > " .. fifo }, { ctx = ctx }))
    end)
    for i = 1, 6 do
      csp.go(function() results:send(csp.exec("echo", { tostring(i) })) end)
    end
    local outs, n = {}, 0
    for _ = 1, 8 do
      local r = results:recv()
      assert.are.equal(0, r.status)
      outs[r.stdout] = true
      n = n + 1
    end
    os.remove(fifo)
    assert.are.same({ ["through\n"] = true, ["1\n"] = true, ["2\n"] = true, ["3\n"] = true,
      ["4\n"] = true, ["5\n"] = true, ["6\n"] = true, [""] = true }, outs)
    assert.are.equal(8, n)
  end)

  it("lets other goroutines run while main waits", function()
    local ticks, stop = 0, false
    local done = csp.chan()
    csp.go(function()
      while not stop do
        ticks = ticks + 1
        csp.sleep(0.005)
      end
      done:close()
    end)
    -- the process ends only after the goroutine has ticked: it waits for a file that it makes
    local tmp = os.tmpname()
    os.remove(tmp)
    csp.go(function()
      while ticks < 3 do csp.sleep(0.005) end
      local f = assert(io.open(tmp, "w"))
      f:close()
    end)
    local r = assert(csp.exec("sh", { "-c", "while [ ! -e " .. tmp .. " ]; do sleep 0.01; done" },
      { ctx = csp.with_timeout(csp.background(), 10) }))
    os.remove(tmp)
    stop = true
    done:recv()
    assert.are.equal(0, r.status)
    assert.is_true(ticks >= 3)
  end)

  it("survives main's wait being cut short by a caught panic", function()
    local ctx, cancel = csp.with_cancel(csp.background())
    local ok, err = pcall(function()
      csp.go(function() error("boom") end)
      csp.exec("sh", { "-c", "sleep 0.1" }, { ctx = ctx })
    end)
    assert.is_false(ok)
    assert.matches("boom", err)
    -- the abandoned process ends while this one runs: its callbacks find nobody to wake
    assert.are.equal("after\n", assert(csp.exec("sh", { "-c", "sleep 0.2; echo after" })).stdout)
    collectgarbage()
    cancel()
    csp.gosched()
    assert.are.equal(1, csp.numgoroutine())
  end)

  both("refuses a NUL byte in the command, an argument, cwd or env, starting nothing", function()
    local tmp = os.tmpname()
    os.remove(tmp)
    for _, call in ipairs {
      { "touch\0rm", { tmp } }, { "touch", { tmp .. "\0x" } },
      { "touch", { tmp }, { cwd = "/\0tmp" } }, { "touch", { tmp }, { env = { "A=1\0" } } },
    } do
      local r, err, code = csp.exec(call[1], call[2], call[3])
      assert.is_nil(r)
      assert.matches("^fork/exec touch: invalid argument", err)
      assert.are.equal("EINVAL", code)
    end
    assert.is_nil(io.open(tmp))
    -- stdin is data: NUL bytes go through
    assert.are.equal("a\0b", assert(csp.exec("cat", {}, { stdin = "a\0b" })).stdout)
  end)

  describe("core._spawn (what csp.exec is built on)", function()
    it("kills a process killed while it is still being spawned", function()
      local p = assert(csp._spawn("sleep", { "10" }))
      p:kill()  -- the spawn runs on the thread pool: it has not finished yet
      local r = assert(p:wait())
      assert.are.equal(9, r.signal)
      p:kill()  -- after wait: nothing to kill, nothing raises
    end)

    it("waits once; a second wait raises Go's error", function()
      local p = assert(csp._spawn("true"))
      assert.are.equal(0, assert(p:wait()).status)
      assert.matches("exec: Wait was already called", raises(p.wait, p))
    end)

    it("forgets a process whose handle is dropped, running or not yet spawned", function()
      for _ = 1, 20 do csp._spawn("true") end
      csp._spawn("sh", { "-c", "exit 0" })
      collectgarbage()
      collectgarbage()
      -- the forgotten ones end meanwhile; their callbacks find no handle
      assert.are.equal("x\n", assert(csp.exec("sh", { "-c", "sleep 0.1; echo x" })).stdout)
      assert.are.equal(1, csp.numgoroutine())
    end)

    it("watches exits with SIGCHLD where pidfds are missing (CSP_NOPIDFD=1 forces it)", function()
      local code = [[
        local csp = require "csp"
        local out = {}
        local wg = csp.waitgroup()
        for i = 1, 5 do  -- concurrent: one SIGCHLD may stand for several exits
          wg:go(function() out[i] = assert(csp.exec("sh", { "-c", "exit " .. i })).status end)
        end
        wg:wait()
        local ctx, cancel = csp.with_cancel(csp.background())
        csp.go(cancel)
        local r = assert(csp.exec("sleep", { "10" }, { ctx = ctx }))
        print(table.concat(out, " "), r.signal, assert(csp.exec("true")).status)
      ]]
      local r = assert(csp.exec("env", { "CSP_NOPIDFD=1", "lua5.4", "-e", code }))
      assert.are.equal("", r.stderr)
      assert.are.equal("1 2 3 4 5\t9\t0\n", r.stdout)
    end)

    it("reports a failed spawn from wait, with Go's message", function()
      local p = assert(csp._spawn("csp-no-such-program"))
      local r, err, code = p:wait()
      assert.is_nil(r)
      assert.are.equal('exec: "csp-no-such-program": executable file not found in $PATH', err)
      assert.are.equal("ENOENT", code)
    end)
  end)

  it("raises on bad arguments", function()
    assert.matches("bad argument #1 to '[%w.]*exec'", raises(csp.exec))
    assert.matches("bad argument #1 to '[%w.]*exec'", raises(csp.exec, {}))
    assert.matches("bad argument #2 to '[%w.]*exec'", raises(csp.exec, "echo", "x"))
    assert.matches("bad argument #2 to 'exec' %(args%[2%]: string expected, got number%)",
      raises(csp.exec, "echo", { "a", 1 }))
    assert.matches("bad argument #3 to '[%w.]*exec'", raises(csp.exec, "echo", {}, "x"))
    local function opt(field, want, got, opts)
      assert.matches(("bad argument #3 to 'exec' %%(field '%s': %s expected, got %s%%)"):format(
        field, want, got), raises(csp.exec, "true", {}, opts), 1)
    end
    opt("stdin", "string", "number", { stdin = 5 })
    opt("cwd", "string", "boolean", { cwd = true })
    opt("env", "table", "string", { env = "A=1" })
    opt("ctx", "context", "number", { ctx = 1 })
    opt("ctx", "context", "csp.chan", { ctx = csp.chan() })
    assert.matches("bad argument #3 to 'exec' %(field 'env'%[1%]: string expected, got table%)",
      raises(csp.exec, "env", {}, { env = { {} } }))
    in_go(function()
      local cmp = function() csp.exec("true") return false end
      assert.matches("non%-yieldable", raises(table.sort, { 1, 2 }, cmp))
    end)
  end)
end)
