-- The network and terminal examples (seed 1.3, 1.4, 1.8, 1.11), run as real processes and
-- driven by real TCP clients: csp's own dial, nc, and the netcat examples. Servers get a free
-- port and short intervals; each is killed at the end of its test.
local csp = require "csp"

local run = require "spec.helpers.run"
local quote, root, ENV = run.quote, run.root, run.env

local slurp = run.slurp

local function free_addr()
  local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
  local addr = ln:addr()
  ln:close()
  return addr
end

local TIME = "^%d%d:%d%d:%d%d$"

-- Starts examples/<name> on a free port with extra arguments; returns its address and a stop
-- function (which returns what the server wrote). Ready once it accepts a connection.
local function server(name, ...)
  local addr = free_addr()
  local pidf, logf = os.tmpname(), os.tmpname()
  os.execute(("cd %s && %s timeout -k 1 90 lua5.4 examples/%s %s %s </dev/null >%s 2>&1 & echo $! >%s")
    :format(quote(root), ENV, name, addr, table.concat({ ... }, " "), quote(logf), quote(pidf)))
  local pid = assert(slurp(pidf):match("%d+"))
  local c
  for _ = 1, 500 do
    c = csp.net.dial("tcp", addr)
    if c then break end
    csp.sleep(0.01)
  end
  assert(c, name .. " did not start: " .. slurp(logf))
  c:close()
  return addr, function()
    os.execute("kill " .. pid .. " 2>/dev/null")
    local log = slurp(logf)
    os.remove(pidf)
    os.remove(logf)
    return log
  end
end

-- Runs examples/<name> through the shell: template has EX for "lua5.4 examples/<name>".
-- Blocks this process: only for talking to servers in other processes.
local function client(name, template)
  local errf = os.tmpname()
  local cmd = template:gsub("EX", function()
    return ("%s timeout -k 1 15 lua5.4 examples/%s"):format(ENV, name)
  end)
  local p = assert(io.popen(("cd %s && { %s; } 2>%s"):format(quote(root), cmd, quote(errf))))
  local out = p:read("a")
  local _, _, status = p:close()
  local err = slurp(errf)
  os.remove(errf)
  return out, status, err
end

-- Same, in the background: this process keeps running goroutines (an in-process server)
-- until the client has exited.
local function client_bg(name, args)
  local out, err, st = os.tmpname(), os.tmpname(), os.tmpname()
  os.remove(st)
  os.execute(("cd %s && (%s timeout -k 1 15 lua5.4 examples/%s %s </dev/null >%s 2>%s; echo $? >%s) &")
    :format(quote(root), ENV, name, args, quote(out), quote(err), quote(st)))
  local t0 = csp.now()
  while slurp(st) == "" and csp.now() - t0 < 15 do csp.sleep(0.02) end
  local status = tonumber(slurp(st):match("%d+"))
  local o, e = slurp(out), slurp(err)
  os.remove(out)
  os.remove(err)
  os.remove(st)
  return o, status, e
end

local function dial(addr)
  local c = assert(csp.net.dial("tcp", addr))
  c:set_read_deadline(csp.now() + 5)  -- a hung server fails the test instead of hanging it
  return c
end

describe("clock", function()
  it("clock2 serves two clients at once, and nc", function()
    local addr, stop = server("clock2.lua", "0.1")
    local a, b = dial(addr), dial(addr)
    for _ = 1, 3 do
      assert.matches(TIME, a:read_line())
      assert.matches(TIME, b:read_line())
    end
    a:close()
    b:close()
    local out = client("clock2.lua", ("timeout 0.45 nc %s %s"):format(addr:match("^(.*):(%d+)$")))
    local n = 0
    for line in out:gmatch("[^\n]+") do
      assert.matches(TIME, line)
      n = n + 1
    end
    assert.is_true(n >= 2, out)
    assert.equal("", stop())
  end)

  it("clock1 serves one client at a time", function()
    local addr, stop = server("clock1.lua", "0.1")
    local a = dial(addr)
    assert.matches(TIME, a:read_line())
    local b = dial(addr)
    b:set_read_deadline(csp.now() + 0.5)
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { b:read_line() })  -- still serving a
    a:close()
    b:set_read_deadline(csp.now() + 5)
    assert.matches(TIME, b:read_line())
    b:close()
    assert.equal("", stop())
  end)
end)

describe("netcat", function()
  it("netcat1 copies what the server sends to stdout until it closes", function()
    local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
    csp.go(function()
      local c = assert(ln:accept())
      c:write("hello\nworld\n")
      c:close()
    end)
    local out, status, err = client_bg("netcat1.lua", ln:addr())
    ln:close()
    assert.equal(0, status, err)
    assert.equal("hello\nworld\n", out)
  end)

  it("netcat1 reports a refused connection and exits with status 1", function()
    local addr = free_addr()
    local out, status, err = client("netcat1.lua", "EX " .. addr)
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("dial tcp " .. addr .. ": connect: connection refused\n", err)
  end)

  -- Runs a netcat that shouts "Hello?" at addr, its stdin open until the three echoes are out
  -- (netcat2 and netcat3 drop echoes still due at the end of input); returns client's results.
  local function shout_until_echoed(name, addr)
    local seen = os.tmpname()
    local out, status, err = client(name, ("(printf 'Hello?\\n'; i=0; "
      .. "while [ $(wc -l <%s) -lt 3 ] && [ $i -lt 750 ]; do sleep 0.02; i=$((i+1)); done) "
      .. "| EX %s | tee %s"):format(quote(seen), addr, quote(seen)))
    os.remove(seen)
    return out, status, err
  end

  it("netcat2 sends stdin and prints the echoes of reverb2", function()
    local addr, stop = server("reverb2.lua", "0.1")
    local out, status, err = shout_until_echoed("netcat2.lua", addr)
    assert.equal(0, status, err)
    assert.equal("\t HELLO?\n\t Hello?\n\t hello?\n", out)
    assert.equal("", stop())
  end)

  it("netcat3 closes the connection at the end of stdin and waits for its reader's done", function()
    local addr, stop = server("reverb1.lua", "0.1")
    local out, status, err = shout_until_echoed("netcat3.lua", addr)
    assert.equal(0, status, err)
    assert.equal("\t HELLO?\n\t Hello?\n\t hello?\n", out)
    assert.equal("done\n", err)
    assert.equal("", stop())
  end)

  it("netcat3 loses the echoes still due when stdin ends (Go's version does too)", function()
    local addr, stop = server("reverb1.lua", "1")
    local t0 = csp.now()
    local out, status, err = client("netcat3.lua", "printf 'Hello?\\n' | EX " .. addr)
    local elapsed = csp.now() - t0
    assert.equal(0, status, err)
    assert.is_true(out == "" or out == "\t HELLO?\n", out)  -- the first echo comes at once
    assert.equal("done\n", err)
    assert.is_true(elapsed < 1, "it waited for the next echo: " .. elapsed)
    assert.equal("", stop())
  end)

  it("netcat3_halfclose half-closes at the end of stdin, gets reverb1's last echoes, ends when it closes", function()
    local addr, stop = server("reverb1.lua", "0.1")
    local t0 = csp.now()
    local out, status, err = client("netcat3_halfclose.lua", "printf 'Hello?\\nBye\\n' | EX " .. addr)
    local elapsed = csp.now() - t0
    assert.equal(0, status, err)
    assert.equal("\t HELLO?\n\t Hello?\n\t hello?\n\t BYE\n\t Bye\n\t bye\n", out)
    assert.equal("done\n", err)
    assert.is_true(elapsed >= 0.35, "the echoes came too soon: " .. elapsed)
    assert.equal("", stop())
  end)
end)

describe("reverb", function()
  -- Two shouts, the second half a delay after the first.
  local function shout_twice(addr, d)
    local c = dial(addr)
    c:write("Is there anybody there?\n")
    csp.sleep(d / 2)
    c:write("Yooo-hooo!\n")
    local got = {}
    for i = 1, 6 do got[i] = c:read_line() end
    c:close()
    return got
  end

  it("reverb1 answers one shout after the other", function()
    local addr, stop = server("reverb1.lua", "0.2")
    assert.same({
      "\t IS THERE ANYBODY THERE?", "\t Is there anybody there?", "\t is there anybody there?",
      "\t YOOO-HOOO!", "\t Yooo-hooo!", "\t yooo-hooo!",
    }, shout_twice(addr, 0.2))
    assert.equal("", stop())
  end)

  it("reverb2's echoes overlap", function()
    local addr, stop = server("reverb2.lua", "0.3")
    assert.same({
      "\t IS THERE ANYBODY THERE?", "\t YOOO-HOOO!", "\t Is there anybody there?",
      "\t Yooo-hooo!", "\t is there anybody there?", "\t yooo-hooo!",
    }, shout_twice(addr, 0.3))
    assert.equal("", stop())
  end)
end)

describe("countdown", function()
  local HEAD = "Commencing countdown.  Press return to abort.\n"

  it("countdown1 counts down and launches", function()
    local out, status = client("countdown1.lua", "EX 3 0.05 </dev/null")
    assert.equal(0, status)
    assert.equal("Commencing countdown.\n3\n2\n1\nLift off!\n", out)
  end)

  it("countdown2: return aborts, stdin open with no input launches", function()
    local t0 = csp.now()
    local out, status = client("countdown2.lua", "(sleep 0.2; echo) | EX 10")
    assert.equal(0, status)
    assert.equal(HEAD .. "Launch aborted!\n", out)
    assert.is_true(csp.now() - t0 < 5)
    out = client("countdown2.lua", "sleep 1 | EX 0.2")  -- stdin open, nobody typing
    assert.equal(HEAD .. "Lift off!\n", out)
  end)

  it("countdown3: return aborts mid-count, stdin open with no input counts down to launch", function()
    local out, status = client("countdown3.lua", "(sleep 0.35; echo) | EX 10 0.1")
    assert.equal(0, status)
    local counted = out:match("^" .. HEAD:gsub("%.", "%%.") .. "([%d\n]*)Launch aborted!\n$")
    assert.is_truthy(counted, out)
    local n = select(2, counted:gsub("\n", ""))
    assert.is_true(n >= 1 and n <= 8, out)
    assert.equal(("10\n9\n8\n7\n6\n5\n4\n3\n"):sub(1, #counted), counted)
    out = client("countdown3.lua", "sleep 1 | EX 3 0.05")
    assert.equal(HEAD .. "3\n2\n1\nLift off!\n", out)
  end)

  it("countdown3_tick counts down the same, and its tick outlives the countdown (the note's leak)", function()
    local out, status, err = client("countdown3_tick.lua", "sleep 1 | EX 3 0.05")
    assert.equal(0, status, err)
    assert.equal(HEAD .. "3\n2\n1\nLift off!\n", out)
    -- only a collection between the countdown's end and the count could take the tick first
    assert.matches("^timers still live: [01] %(the forgotten tick%)\nafter a collection: 0\n$", err)
    out, status, err = client("countdown3_tick.lua", "EX 10 1 </dev/null")
    assert.equal(0, status, err)
    assert.equal(HEAD .. "10\nLaunch aborted!\n", out)
    assert.matches("after a collection: 0\n$", err)
  end)

  it("the end of input aborts, as Go's os.Stdin.Read returning EOF does", function()
    local t0 = csp.now()
    local out, status = client("countdown2.lua", "EX 10 </dev/null")
    assert.equal(0, status)
    assert.equal(HEAD .. "Launch aborted!\n", out)
    out, status = client("countdown3.lua", "EX 10 1 </dev/null")
    assert.equal(0, status)
    assert.equal(HEAD .. "10\nLaunch aborted!\n", out)
    out = client("countdown2.lua", "true | EX 10")  -- a pipe closed at once (Ctrl-D)
    assert.equal(HEAD .. "Launch aborted!\n", out)
    assert.is_true(csp.now() - t0 < 9, "an abort waited for the countdown")
  end)
end)

describe("chat", function()
  it("three clients see the arrivals, the messages and the leaves", function()
    local addr, stop = server("chat.lua")
    local a = dial(addr)
    local A = a:local_addr()
    assert.equal("You are " .. A, a:read_line())
    local b = dial(addr)
    local B = b:local_addr()
    assert.equal("You are " .. B, b:read_line())
    assert.equal(B .. " has arrived", a:read_line())
    a:write("Hi!\n")
    assert.equal(A .. ": Hi!", a:read_line())
    assert.equal(A .. ": Hi!", b:read_line())
    b:write("Hi yourself.\n")
    assert.equal(B .. ": Hi yourself.", a:read_line())
    assert.equal(B .. ": Hi yourself.", b:read_line())
    a:close()
    assert.equal(A .. " has left", b:read_line())
    -- The third client is nc, its output in a file.
    local ncout = os.tmpname()
    local host, port = addr:match("^(.*):(%d+)$")
    local nc = assert(io.popen(("timeout 10 nc -N %s %s >%s"):format(host, port, quote(ncout)), "w"))
    local arrived = b:read_line()
    local C = arrived:match("^(.*) has arrived$")
    assert.is_truthy(C, arrived)
    nc:write("Welcome.\n")
    nc:flush()
    assert.equal(C .. ": Welcome.", b:read_line())
    b:close()
    local t0 = csp.now()  -- C hears that B left before it leaves itself
    while not slurp(ncout):find(B .. " has left\n", 1, true) and csp.now() - t0 < 5 do
      csp.sleep(0.02)
    end
    nc:close()  -- end of input: nc half-closes, the server says goodbye and closes
    assert.equal(("You are %s\n%s: Welcome.\n%s has left\n"):format(C, C, B), slurp(ncout))
    os.remove(ncout)
    assert.equal("", stop())
  end)

  it("lines that queue up for a client while its writer waits arrive whole and in order", function()
    -- 200 lines in one write: the broadcaster queues them faster than b's writer sends, which
    -- then sends what is queued as one write.
    local addr, stop = server("chat.lua")
    local a, b = dial(addr), dial(addr)
    local A = a:local_addr()
    assert.equal("You are " .. A, a:read_line())
    assert.truthy(b:read_line():find("^You are "))
    assert.truthy(a:read_line():find(" has arrived$"))
    local lines = {}
    for i = 1, 200 do lines[i] = "line " .. i end
    assert(a:write(table.concat(lines, "\n"), "\n"))
    b:set_read_deadline(csp.now() + 30)
    for i = 1, 200 do
      local line
      repeat line = assert(b:read_line()) until not line:find(" has arrived$")
      assert.equal(A .. ": line " .. i, line)
    end
    a:close()
    b:close()
    stop()
  end)

  it("disconnects a client that stays silent longer than the idle timeout", function()
    local addr, stop = server("chat.lua", "0.4")
    local quiet = dial(addr)
    local Q = quiet:local_addr()
    assert.equal("You are " .. Q, quiet:read_line())
    local t0 = csp.now()
    local talker = dial(addr)
    local T = talker:local_addr()
    assert.equal("You are " .. T, talker:read_line())
    local seen = csp.chan(100)
    csp.go(function()
      for line in talker:lines() do seen:send(line) end
      seen:close()
    end)
    for _ = 1, 8 do  -- talks every 0.1 s: never idle
      talker:write("ping\n")
      csp.sleep(0.1)
    end
    local got, err
    repeat  -- it hears the others until the server hangs up on it
      got, err = quiet:read_line()
      assert.is_true(got == nil or got == T .. " has arrived" or got == T .. ": ping", got)
    until got == nil
    assert.equal("EOF", err)
    local elapsed = csp.now() - t0
    assert.is_true(elapsed >= 0.3 and elapsed < 3, "elapsed " .. elapsed)
    talker:close()
    local lines = {}
    for line in seen:range() do lines[#lines + 1] = line end
    local left = false
    for _, line in ipairs(lines) do
      if line == Q .. " has left" then left = true end
      assert.is_true(line == T .. ": ping" or line == Q .. " has left", line)
    end
    assert.is_true(left, table.concat(lines, "\n"))
    quiet:close()
    assert.equal("", stop())
  end)

  -- n clients, all registered with the broadcaster, each send one line at the same moment:
  -- every client must receive all n lines (Go's broadcaster never drops a client that reads).
  local function burst(n)
    local addr, stop = server("chat.lua")
    local clients = {}
    for i = 1, n do
      local c = dial(addr)
      c:set_read_deadline(csp.now() + 120)
      local me = c:local_addr()
      assert.equal("You are " .. me, c:read_line())
      clients[i] = { c = c, me = me }
    end
    -- Each says "ready" and waits for its own echo: the broadcaster has registered it then.
    local wg = csp.waitgroup()
    for _, cl in ipairs(clients) do
      wg:go(function()
        assert(cl.c:write("ready\n"))
        repeat
          local line = assert(cl.c:read_line())
        until line == cl.me .. ": ready"
      end)
    end
    wg:wait()
    local start, results = csp.chan(), csp.chan(n)
    for _, cl in ipairs(clients) do
      csp.go(function()
        start:recv()
        cl.c:write("burst\n")
        local from = {}
        for _ = 1, n do
          local line, err
          repeat
            line, err = cl.c:read_line()
          until not line or line:find(": burst$")
          if not line then
            results:send(("%s: %s after %d burst lines"):format(cl.me, err, #from))
            return
          end
          from[#from + 1] = line
        end
        table.sort(from)
        for i = 2, n do
          if from[i] == from[i - 1] then return results:send(cl.me .. ": twice: " .. from[i]) end
        end
        results:send(true)
      end)
    end
    start:close()  -- everyone writes now
    local failures = {}
    for _ = 1, n do
      local r = results:recv()
      if r ~= true then failures[#failures + 1] = r end
    end
    for _, cl in ipairs(clients) do cl.c:close() end
    assert.same({}, failures)
    stop()
  end

  it("a burst: 70 clients each send one line at once, every client receives every line", function()
    burst(70)
  end)

  it("a burst of 500 clients: every client receives every line", function()
    burst(500)
  end)

  it("drops a client whose queue stays full instead of stalling the others", function()
    local addr, stop = server("chat.lua", "300", "0.5")
    local slow = dial(addr)  -- never reads
    local S = slow:local_addr()
    local observer, talker = dial(addr), dial(addr)
    local T = talker:local_addr()
    observer:set_read_deadline(csp.now() + 15)
    local seen = csp.chan(1000)
    csp.go(function()
      for line in observer:lines() do seen:send(#line > 100 and "BIG" or line) end
      seen:close()
    end)
    local big = string.rep("x", 50000)
    local echo = T .. ": " .. big
    assert.equal("You are " .. T, talker:read_line())
    for _ = 1, 400 do  -- 20 MB for everyone; the talker waits for its own echo each time
      assert(talker:write(big, "\n"))
      repeat
        local line = assert(talker:read_line())
      until line == echo
    end
    talker:write("end\n")
    local bigs, dropped = 0, false
    while true do
      local line = seen:recv()
      assert.is_not_nil(line, "observer cut off")
      if line == "BIG" then bigs = bigs + 1
      elseif line == S .. " has left" then dropped = true
      elseif line == T .. ": end" then break end
    end
    assert.equal(400, bigs)
    assert.is_true(dropped, "the slow client was not dropped")
    -- its connection was closed by the server: reading it ends with EOF or a reset
    slow:set_read_deadline(csp.now() + 5)
    local err
    repeat
      local got
      got, err = slow:read()
    until not got
    assert.is_true(err == "EOF" or err:find("reset", 1, true) ~= nil, err)
    slow:close()
    observer:close()
    talker:close()
    assert.equal("", stop())
  end)
end)
