-- csp.stdin, csp.stdout, csp.stderr and csp.io.copy: API.md "I/O". Each case runs a child
-- lua5.4 with its standard streams set up by the shell: a pipe, a regular file, /dev/null, or a
-- terminal (a pty from python3). This process's own stdio is never touched.

local run = require "spec.helpers.run"
local quote, ENV = run.quote, run.env

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- sh(code, template): writes code to a script and runs template with LUA standing for
-- "lua5.4 <script>" (environment set); returns stdout, exit status.
local function sh(code, template)
  local script = os.tmpname()
  spit(script, code)
  local lua = ("env %s timeout -k 2 15 lua5.4 %s"):format(ENV, quote(script))
  local p = assert(io.popen(template:gsub("LUA", function() return lua end), "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  os.remove(script)
  return out, status
end

local COPY = [[
  local csp = require "csp"
  local n, err = csp.io.copy(csp.stdout, csp.stdin)
  csp.stderr:write(("copied %d %s\n"):format(n, tostring(err)))
]]

describe("csp.stdin and csp.stdout", function()
  it("pipes: read_line, lines and write", function()
    local out, status = sh([[
      local csp = require "csp"
      local first = csp.stdin:read_line()
      local rest = {}
      for line in csp.stdin:lines() do rest[#rest + 1] = line end
      assert(csp.stdout:write(first .. "|" .. table.concat(rest, ",") .. "\n") == #first + 2 + #table.concat(rest, ","))
    ]], [[printf 'one\ntwo\r\nthree' | LUA | cat]])
    assert.equal(0, status)
    assert.equal("one|two,three\n", out)
  end)

  it("io.copy between pipes returns the byte count and nil", function()
    local out, status = sh(COPY, [[seq 1 20000 | LUA 2>&1 | tail -n 2]])
    assert.equal(0, status)
    local expect = 0
    for i = 1, 20000 do expect = expect + #tostring(i) + 1 end
    assert.equal("20000\ncopied " .. expect .. " nil\n", out)
  end)

  it("io.copy: a writer that takes less than its piece ends the copy with 'short write' (Go)", function()
    local copy = require("csp").io.copy
    local function reader(pieces)
      local i = 0
      return { read = function() i = i + 1; if pieces[i] then return pieces[i] end; return nil, "EOF", "EOF" end }
    end
    local got = {}
    local short = { write = function(_, s) got[#got + 1] = s; return #got == 1 and #s or 1 end }
    assert.same({ 8, "short write" }, { copy(short, reader { "abcdefg", "xyz", "never" }) })
    assert.same({ "abcdefg", "xyz" }, got)
    local file = { write = function(self) return self end }  -- Lua's file:write returns the file
    assert.same({ 6 }, { copy(file, reader { "abc", "def" }) })
    local failing = { write = function() return nil, "write x: broken pipe", "EPIPE", 2 end }
    assert.same({ 2, "write x: broken pipe" }, { copy(failing, reader { "abc" }) })
  end)

  it("regular files redirected to stdin and stdout work", function()
    local input, output = os.tmpname(), os.tmpname()
    local lines = {}
    for i = 1, 50000 do lines[i] = ("line %d %s"):format(i, ("x"):rep(i % 50)) end
    local data = table.concat(lines, "\n") .. "\n"
    spit(input, data)
    local out, status = sh(COPY, ("LUA <%s >%s 2>&1; cat %s | tail -c 40"):format(
      quote(input), quote(output), quote(output)))
    assert.equal(0, status)
    local got = slurp(output)
    assert.equal(#data + #("copied " .. #data .. " nil\n"), #got)
    assert.is_true(got:sub(1, #data) == data)
    assert.matches("copied " .. #data .. " nil\n$", out)
    os.remove(input)
    os.remove(output)
  end)

  it("a file read in flight lands after what is buffered, even when another read empties it", function()
    -- read_line holds 4096 'a's without a newline and reads on; meanwhile read(8192) takes them
    -- all: the 'b's still arrive whole, not shifted over stale bytes.
    local input = os.tmpname()
    spit(input, ("a"):rep(4096) .. ("b"):rep(4096) .. "\n")
    local out, status = sh([[
      local csp = require "csp"
      local done = csp.chan()
      local line, bytes
      csp.go(function() line = csp.stdin:read_line() done:send(true) end)
      csp.go(function() bytes = csp.stdin:read(8192) done:send(true) end)
      done:recv() done:recv()
      print(line == ("b"):rep(4096), bytes == ("a"):rep(4096), (csp.stdin:read(1)))
    ]], ("LUA <%s"):format(quote(input)))
    os.remove(input)
    assert.equal(0, status)
    assert.equal("true\ttrue\tnil\n", out)
  end)

  it("stdin from a directory: reads fail with Go's EISDIR error", function()
    local out, status = sh([[
      local csp = require "csp"
      print(csp.stdin:read())
      print(csp.stdin:read_line())
    ]], "LUA </tmp")
    assert.equal(0, status)
    assert.equal(("nil\tread /dev/stdin: is a directory\tEISDIR\n"):rep(2), out)
  end)

  it("stdin from /dev/null is at EOF at once", function()
    local out = sh([[
      local csp = require "csp"
      print(csp.stdin:read())
      print(csp.stdin:read_line())
    ]], [[LUA </dev/null]])
    assert.equal("nil\tEOF\tEOF\nnil\tEOF\tEOF\n", out)
  end)

  it("waiting for stdin does not block other goroutines", function()
    -- The input comes only once a goroutine has ticked 5 times while main waits in read_line
    -- (it opens a FIFO the shell waits on): a read that blocked the thread would time out.
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute("mkfifo " .. quote(fifo)))
    local out, status = sh(([[
      local csp = require "csp"
      local ticks = 0
      csp.go(function()
        while ticks < 5 do csp.sleep(0.02) ticks = ticks + 1 end
        local f = assert(io.open(%q, "w"))
        f:write("ticked\n")
        f:close()
      end)
      local line = csp.stdin:read_line()
      print(line, ticks >= 5)
    ]]):format(fifo), ("(read x < %s; echo go) | LUA"):format(quote(fifo)))
    os.remove(fifo)
    assert.equal(0, status)
    assert.equal("go\ttrue\n", out)
  end)

  it("print and csp.stdout:write keep their order", function()
    local out = sh([[
      local csp = require "csp"
      print("a")
      csp.stdout:write("b\n")
      io.write("c\n")
      csp.stdout:write("d\n")
      print("e")
    ]], [[LUA | cat]])
    assert.equal("a\nb\nc\nd\ne\n", out)
  end)

  it("writing to a pipe nobody reads returns EPIPE; SIGPIPE does not kill the process", function()
    local out = sh([[
      local csp = require "csp"
      csp.sleep(0.2)
      local n, err, code
      for _ = 1, 100 do
        n, err, code = csp.stdout:write("data\n")
        if not n then break end
      end
      io.stderr:write(tostring(code), " ", tostring(err), "\n")
    ]], [[{ LUA | true; } 2>&1]])
    assert.equal("EPIPE write /dev/stdout: broken pipe\n", out)
  end)

  it("puts the descriptor flags back at exit", function()
    local out = sh([[
      local csp = require "csp"
      csp.stdout:write("x\n")
      local f = io.open("/proc/self/fdinfo/1")
      csp.stderr:write("during ", f and f:read("a"):match("flags:%s*(%d+)") or "?", "\n")
    ]], [[echo | (LUA 2>&1; grep flags /proc/self/fdinfo/1) | cat]])
    local during = out:match("during (%d+)")
    local after = out:match("flags:%s*(%d+)")
    if during == nil or after == nil or during == "?" then
      pending("no /proc/self/fdinfo here")
      return
    end
    assert.is_true(tonumber(during, 8) & 2048 ~= 0, "not non-blocking while in use: " .. out)
    assert.equal(0, tonumber(after, 8) & 2048, "left non-blocking: " .. out)
  end)

  it("stderr is writable too; close() makes later calls return an error", function()
    local out = sh([[
      local csp = require "csp"
      csp.stderr:write("to stderr\n")
      assert(csp.stdin:close())
      print(csp.stdin:read())
      print(csp.stdin:close())
    ]], [[echo hi | LUA 2>&1]])
    assert.equal("to stderr\n" ..
      "nil\tread /dev/stdin: file already closed\tEBADF\n" ..
      "nil\tclose /dev/stdin: file already closed\tEBADF\n", out)
  end)

  it("a terminal: reads a line, writes, and other goroutines run meanwhile", function()
    local script = os.tmpname()
    spit(script, [[
      local csp = require "csp"
      local ticks = 0
      csp.go(function() while true do csp.sleep(0.02) ticks = ticks + 1 end end)
      csp.stdout:write("prompt> ")
      local line = csp.stdin:read_line()
      csp.stdout:write(("got [%s] %s\n"):format(line, tostring(ticks >= 5)))
    ]])
    local py = [==[
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("lua5.4", ["lua5.4", sys.argv[1]])
out = b""
deadline = time.time() + 10
sent = False
while time.time() < deadline:
    try:
        d = os.read(fd, 1024)
    except OSError:
        break
    if not d:
        break
    out += d
    if not sent and b"prompt> " in out:
        time.sleep(0.3)
        os.write(fd, b"hello tty\n")
        sent = True
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode() + "status %d\n" % st)
]==]
    local pyfile = os.tmpname()
    spit(pyfile, py)
    local p = assert(io.popen(("env %s timeout -k 2 15 python3 %s %s"):format(ENV, quote(pyfile), quote(script))))
    local out = p:read("a")
    p:close()
    os.remove(script)
    os.remove(pyfile)
    assert.matches("got %[hello tty%] true\r?\n", out)
    assert.matches("status 0\n$", out)
  end)
end)

describe("closed standard descriptors", function()
  -- Daemons and CI runners start programs with fd 0, 1 or 2 closed: libuv asserted at exit.
  local CODE = [[
    local csp = require "csp"
    local function show(...)
      local t = table.pack(...)
      return tostring(t[1]) .. "|" .. tostring(t[2]) .. "|" .. tostring(t[3])
    end
    local lines = { show(csp.stdin:read()), show(csp.stdout:write("x\n")), show(csp.stderr:write("e\n")) }
    csp.sleep(0.001)  -- the loop runs, and closes its descriptors at exit
    local f = assert(io.open(os.getenv("OUT"), "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
  ]]
  local function case(redir)
    local out = os.tmpname()
    local cmd = "OUT=" .. quote(out) .. " LUA </dev/null >/dev/null 2>/dev/null " .. redir .. "; echo $?"
    local _, status = sh(CODE, cmd)
    local f = assert(io.open(out, "rb"))
    local got = f:read("a")
    f:close()
    os.remove(out)
    return got, status
  end

  it("stdin closed: reads return nil, err, EBADF; no abort at exit", function()
    local got = case("<&-")
    assert.equal("nil|read /dev/stdin: bad file descriptor|EBADF\n2|nil|nil\n2|nil|nil\n", got)
  end)

  it("stdout closed: writes return nil, err, EBADF; print does not crash", function()
    local got = case(">&-")
    assert.equal("nil|EOF|EOF\nnil|write /dev/stdout: bad file descriptor|EBADF\n2|nil|nil\n", got)
  end)

  it("stderr closed", function()
    local got = case("2>&-")
    assert.equal("nil|EOF|EOF\n2|nil|nil\nnil|write /dev/stderr: bad file descriptor|EBADF\n", got)
  end)

  it("all three closed: exit status 0", function()
    local out = os.tmpname()
    local status = sh(CODE, "OUT=" .. quote(out) .. " LUA <&- >&- 2>&-; echo $?")
    os.remove(out)
    assert.equal("0\n", status)
  end)
end)

describe("io.copy's end of input", function()
  local csp = require "csp"
  -- readers of Lua's own: chunks, then the failure they end with
  local function reader(fail)
    local chunks = { "ab", "cde" }
    return { read = function()
      if #chunks > 0 then return table.remove(chunks, 1) end
      return fail()
    end }
  end
  local function sink()
    local t = {}
    return t, { write = function(_, s) t[#t + 1] = s return #s end }
  end

  it("is the code EOF whatever the message, or the message EOF without a code", function()
    local got, dst = sink()
    assert.are.same({ 5 }, { csp.io.copy(dst, reader(function() return nil, "end of file", "EOF" end)) })
    assert.are.equal("abcde", table.concat(got))
    assert.are.same({ 5 }, { csp.io.copy(dst, reader(function() return nil, "EOF" end)) })
  end)

  it("is no other failure: its message comes back", function()
    local _, dst = sink()
    assert.are.same({ 5, "read: reset" },
      { csp.io.copy(dst, reader(function() return nil, "read: reset", "ECONNRESET" end)) })
  end)
end)
