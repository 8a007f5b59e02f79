-- Signals: API.md "Observability" SIGQUIT row. Real signals (kill(1)) to a real child lua5.4:
-- SIGQUIT dumps every goroutine and exits 2 (CSP_SIGQUIT=dump continues); SIGINT stops a program
-- at once even while everything waits in the event loop; a second SIGINT kills.
local csp = require "csp"
local run = require "spec.helpers.run"

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local function slurp(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Waits (parked, polling every 10 ms) until ok() holds; fails after 20 s instead of hanging.
local function await(what, ok)
  local deadline = csp.now() + 20
  while not ok() do
    assert(csp.now() < deadline, "timed out waiting for " .. what)
    csp.sleep(0.01)
  end
end

-- Starts `code` in a child lua5.4 (through csp.exec: uv_spawn resets signal dispositions, so the
-- child gets SIGINT and SIGQUIT even when this process runs in a background job). In the child,
-- READY(name) creates the marker file `name` when it has reached a point. Returns a handle.
local function child(code, env)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. run.quote(dir)))
  local prog = dir .. "/prog.lua"
  local f = assert(io.open(prog, "w"))
  f:write(([[
local function READY(name)
  local f = assert(io.open(%q .. "/" .. name .. ".tmp", "w"))
  f:close()
  assert(os.rename(%q .. "/" .. name .. ".tmp", %q .. "/" .. name))
end
local function EXISTS(name) -- luacheck: ignore
  local f = io.open(%q .. "/" .. name)
  if f then f:close() end
  return f ~= nil
end
]]):format(dir, dir, dir, dir), code)
  f:close()
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. run.quote(v) end
  -- exec all the way: the shell's pid is lua5.4's (h.result kills a child that hangs)
  local sh = ("echo $$ > %s/pid; exec env %s %s lua5.4 %s >%s/stdout 2>%s/stderr"):format(
    run.quote(dir), run.env, table.concat(vars, " "), run.quote(prog), run.quote(dir), run.quote(dir))
  local done = csp.chan(1)
  csp.go(function() done:send(assert(csp.exec("sh", { "-c", sh }))) end)
  local h = { dir = dir, done = done }
  function h.wait_ready(name)
    await(name, function() return exists(dir .. "/" .. name) end)
  end
  function h.kill(sig)
    local pid = slurp(dir .. "/pid"):match("%d+")
    assert(os.execute(("kill -s %s %s"):format(sig, pid))) -- the shell's builtin: no new program
  end
  function h.stderr() return slurp(dir .. "/stderr") end
  function h.touch(name) assert(io.open(dir .. "/" .. name, "w")):close() end
  -- Waits for the child to print the line (flushed) on its stdout.
  function h.wait_line(line)
    await("the line " .. line, function()
      return ("\n" .. slurp(dir .. "/stdout")):find("\n" .. line .. "\n", 1, true)
    end)
  end
  -- The child's exec result and its stderr; fails if it does not end within 30 s.
  function h.result()
    local i, res = csp.select { csp.recv(done), csp.recv(csp.after(30)) }
    local err = h.stderr()
    if i ~= 1 then h.kill("KILL") end
    assert(i == 1, "the child did not end: " .. err)
    return res, err
  end
  function h.cleanup() os.execute("rm -rf " .. run.quote(dir)) end
  return h
end

-- Main parked in the loop while goroutine 2 runs Lua code that never blocks: the loop never
-- runs again to see a signal; the hook on the running goroutine's thread does.
local SPINNER = [[
  local csp = require "csp"
  csp.go(function()
    READY("ready")
    local x = 0
    while true do x = x + 1 end
  end)
  csp.sleep(60)
]]

describe("SIGINT", function()
  local function interrupted(h)
    local res, err = h.result()
    h.cleanup()
    return res, err
  end

  it("stops an idle server at once: interrupted! in main's blocking accept", function()
    local h = child([[
      local csp = require "csp"
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      csp.go(function() csp.chan():recv() end)
      csp.go(function() READY("ready") end)
      ln:accept()
    ]])
    h.wait_ready("ready") -- written once main parked in accept: the loop has nothing else to do
    h.kill("INT")
    local res, err = interrupted(h)
    assert.are.equal(1, res.status, err)
    assert.is_truthy(err:find("interrupted!", 1, true), err)
    assert.is_truthy(err:find("in method 'accept'", 1, true), err)
  end)

  it("stops an idle chat.lua -stats, which prints its metrics every 5 s meanwhile", function()
    local h = child(("arg = { [0] = %q, '-stats', '127.0.0.1:0' }; dofile(arg[0])"):format(
      run.root .. "/examples/chat.lua"))
    await("chat's stats line", function() return h.stderr():find("\n", 1, true) ~= nil end)
    h.kill("INT")
    local res, err = interrupted(h)
    assert.are.equal(1, res.status, err)
    local line = err:match("^[^\n]*")
    assert.is_truthy(line:match("^stats: goroutines=3 runnable_max=%d+ blocked{select=1} timers=1 "
      .. "chan_buffered=0 %(0 B%) loop_lag p50=[%d.]+us p99=[%d.]+us$"), line)
    assert.is_truthy(err:find("interrupted!", 1, true), err)
    assert.is_truthy(err:find("in method 'accept'", 1, true), err)
  end)

  it("stops a main blocked on a channel while a goroutine sleeps, and a busy main", function()
    local h = child([[
      local csp = require "csp"
      csp.go(function() csp.sleep(60) end)
      csp.go(function() READY("ready") end)
      csp.chan():recv()
    ]])
    h.wait_ready("ready")
    h.kill("INT")
    local res, err = interrupted(h)
    assert.are.equal(1, res.status, err)
    assert.is_truthy(err:find("interrupted!", 1, true), err)
    assert.is_truthy(err:find("in method 'recv'", 1, true), err)

    h = child([[
      require "csp"
      READY("ready")
      local x = 0
      while true do x = x + 1 end
    ]])
    h.wait_ready("ready")
    h.kill("INT")
    res, err = interrupted(h)
    assert.are.equal(1, res.status, err)
    assert.is_truthy(err:find("interrupted!", 1, true), err)
  end)

  it("stops goroutines that keep each other busy", function()
    local h = child([[
      local csp = require "csp"
      local a, b = csp.chan(), csp.chan()
      csp.go(function() while true do a:send(1); b:recv() end end)
      csp.go(function() READY("ready") end)
      while true do a:recv(); b:send(1) end
    ]])
    h.wait_ready("ready")
    h.kill("INT")
    local res, err = interrupted(h)
    assert.are.equal(1, res.status, err)
    assert.is_truthy(err:find("interrupted!", 1, true), err)
  end)

  it("stops a goroutine running Lua code that never blocks, while main waits", function()
    local h = child(SPINNER)
    h.wait_ready("ready")
    h.kill("INT")
    local res, err = interrupted(h)
    assert.are.equal(1, res.status, err)
    assert.is_truthy(err:find("goroutine 2: interrupted!", 1, true), err)
  end)

  it("a second SIGINT kills a program that caught the first", function()
    local h = child([[
      local csp = require "csp"
      csp.go(function() csp.sleep(60) end) -- keeps it alive: no deadlock
      csp.go(function() READY("ready") end)
      local ok, err = pcall(function() csp.chan():recv() end)
      assert(not ok and err:find("interrupted!"))
      csp.go(function() READY("caught") end)
      csp.chan():recv()
    ]])
    h.wait_ready("ready")
    h.kill("INT")
    h.wait_ready("caught")
    h.kill("INT")
    local res, err = interrupted(h)
    assert.are.equal(-1, res.status, err)
    assert.are.equal(2, res.signal, err)
  end)
end)

describe("SIGINT with CSP_LEAKS=1", function()
  -- leak() leaves a goroutine parked sending on a channel nobody else holds
  local prelude = [[
      local csp = require "csp"
      local function leak() local c = csp.chan(); csp.go(function() c:send(1) end) end
      leak()
      csp.gosched()
  ]]

  local function leaks_then_interrupted(h)
    local res, err = h.result()
    h.cleanup()
    assert.are.equal(1, res.status, err)  -- lua5.4's status for an uncaught error
    local report = err:find("csp: 1 leaked goroutine (blocked forever, unreachable):\n\ngoroutine 2 [chan send]:",
      1, true)
    local interrupted = err:find("interrupted!", 1, true)
    assert.is_truthy(report, err)
    assert.is_truthy(interrupted, err)
    assert.is_true(report < interrupted, err)  -- printed before the error unwinds main
    local _, n = err:gsub("leaked goroutine", "")
    assert.are.equal(1, n, err)  -- once: the script's end never comes
  end

  it("prints the leaks when Ctrl-C stops a main parked in the event loop", function()
    local h = child(prelude .. [[
      csp.go(function() csp.sleep(60) end) -- keeps it alive: no deadlock
      csp.go(function() print("ready"); io.stdout:flush() end)
      csp.chan():recv()
    ]], { CSP_LEAKS = "1" })
    h.wait_line("ready")
    h.kill("INT")
    leaks_then_interrupted(h)
  end)

  it("prints the leaks when Ctrl-C stops a main running Lua code", function()
    local h = child(prelude .. [[
      print("ready"); io.stdout:flush()
      local x = 0
      while true do x = x + 1 end
    ]], { CSP_LEAKS = "1" })
    h.wait_line("ready")
    h.kill("INT")
    leaks_then_interrupted(h)
  end)

  it("keeps the report at the script's end after a SIGQUIT dump taken in main's hook", function()
    local h = child(prelude .. [[
      print("ready"); io.stdout:flush()
      while not EXISTS("go-on") do end -- busy: the signal is taken in main's debug hook
    ]], { CSP_LEAKS = "1", CSP_SIGQUIT = "dump" })
    h.wait_line("ready")
    h.kill("QUIT")
    await("the dump", function() return h.stderr():find("created by goroutine 1", 1, true) ~= nil end)
    h.touch("go-on")
    local res, err = h.result()
    h.cleanup()
    assert.are.equal(0, res.status, err)
    local dump = err:find("SIGQUIT: quit\n\ngoroutine 1 [running]:", 1, true)
    local report = err:find("csp: 1 leaked goroutine (blocked forever, unreachable):", 1, true)
    assert.is_truthy(dump, err)
    assert.is_truthy(report, err)  -- the signal's hook did not drop the report's
    assert.is_true(dump < report, err)
  end)
end)

describe("SIGQUIT", function()
  it("prints every goroutine's dump on stderr and exits with status 2", function()
    local h = child([[
      local csp = require "csp"
      local c = csp.chan()
      csp.go(function() c:recv() end)
      csp.go(function() csp.sleep(60) end)
      csp.go(function() READY("ready") end)
      local mu = csp.mutex(); mu:lock()
      mu:lock()
    ]])
    h.wait_ready("ready")
    h.kill("QUIT")
    local res, err = h.result()
    h.cleanup()
    assert.are.equal(2, res.status, err)
    assert.is_truthy(err:find("^SIGQUIT: quit\n\ngoroutine 1 %[sync.Mutex.Lock%]:"), err)
    assert.is_truthy(err:find("goroutine 2 [chan receive]:", 1, true), err)
    assert.is_truthy(err:find("goroutine 3 [sleep]:", 1, true), err)
  end)

  it("dumps and exits 2 while a goroutine runs Lua code that never blocks", function()
    local h = child(SPINNER)
    h.wait_ready("ready")
    h.kill("QUIT")
    local res, err = h.result()
    h.cleanup()
    assert.are.equal(2, res.status, err)
    assert.is_truthy(err:find("^SIGQUIT: quit\n\ngoroutine 1 %[sleep%]:"), err)
    assert.is_truthy(err:find("goroutine 2 %[running%]:\n\t[^\n]*prog%.lua:%d+: in function"), err)
  end)

  it("dumps the goroutines of every csp.thread too", function()
    local h = child([[
      local csp = require "csp"
      local x, up = csp.xchan(), csp.xchan()
      local t = csp.thread(function(x, up)
        local csp = require "csp"
        csp.go(function() csp.chan():recv() end)
        up:send(true)
        x:recv()
      end, x, up)
      up:recv()
      csp.go(function() csp.sleep(60) end)
      READY("ready")
      t:join()
    ]])
    h.wait_ready("ready")
    h.kill("QUIT")
    local res, err = h.result()
    h.cleanup()
    assert.are.equal(2, res.status, err)
    assert.is_truthy(err:find("^SIGQUIT: quit\n\ngoroutine 1 %[thread join%]:"), err)
    local sec = err:find("\n\nthread 1:\n", 1, true)
    assert.is_truthy(sec, err)
    assert.is_truthy(err:find("goroutine 1 [xchan receive]:", sec, true), err)
    assert.is_truthy(err:find("goroutine 2 [chan receive]:", sec, true), err)
  end)

  it("CSP_SIGQUIT=dump prints and the program goes on", function()
    local h = child([[
      local csp = require "csp"
      csp.go(function() csp.chan():recv() end)
      csp.go(function() csp.sleep(60) end) -- keeps it alive: no deadlock
      csp.go(function() READY("ready") end)
      csp.chan():recv()
    ]], { CSP_SIGQUIT = "dump" })
    h.wait_ready("ready")
    h.kill("QUIT")
    await("the dump", function() return h.stderr():find("created by goroutine 1", 1, true) ~= nil end)
    h.kill("QUIT")
    await("a second dump", function()
      local _, n = h.stderr():gsub("SIGQUIT: quit", "")
      return n == 2
    end)
    h.kill("INT")
    local res, err = h.result()
    h.cleanup()
    assert.are.equal(1, res.status, err)
    assert.is_truthy(err:find("goroutine 2 [chan receive]:", 1, true), err)
    assert.is_truthy(err:find("interrupted!", 1, true), err)
  end)
end)
