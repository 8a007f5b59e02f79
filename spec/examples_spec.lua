-- Runs each example as a real subprocess and checks its output where it is deterministic.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."

local function quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

local ENV = ("LUA_PATH=%s LUA_CPATH=%s "):format(
  quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
  -- the parent's module path: under `make asan` the examples load the sanitized build too
  quote(os.getenv("LUA_CPATH") or (root .. "/build/?.so;;")))

-- Runs examples/<name> with args; returns stdout, exit code, stderr. `timeout` turns a
-- hung example into a failure instead of a hung spec.
local function run(name, args)
  local errf = os.tmpname()
  local p = assert(io.popen(("cd %s && %stimeout 10 lua5.4 examples/%s %s 2>%s"):format(
    quote(root), ENV, name, args or "", quote(errf))))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = assert(io.open(errf))
  local err = f:read("a")
  f:close()
  os.remove(errf)
  return out, code, err
end

-- Runs an example and asserts it exited with status 0; returns its stdout.
local function run_ok(name, args)
  local out, code, err = run(name, args)
  assert.are.equal(0, code, name .. " failed:\n" .. err)
  return out
end

local function lines(...)
  return table.concat({ ... }, "\n") .. "\n"
end

describe("examples", function()
  it("gosched: the goroutine runs first, since main yields before each hello", function()
    assert.are.equal(lines("world", "world", "hello", "hello"), run_ok("gosched.lua"))
  end)

  it("goexit: only the defers run, innermost first", function()
    assert.are.equal("B.defer\nA.defer\n", run_ok("goexit.lua"))
  end)

  it("select_evenodd: prints 0 2 4 6 8", function()
    assert.are.equal(lines("0", "2", "4", "6", "8"), run_ok("select_evenodd.lua"))
  end)

  it("pipeline: the squares of 0..99 in order", function()
    local want = {}
    for x = 0, 99 do want[#want + 1] = tostring(x * x) end
    assert.are.equal(lines(table.unpack(want)), run_ok("pipeline.lua"))
  end)

  it("sieve: the first 10 primes by default, N from the argument", function()
    assert.are.equal(lines("2", "3", "5", "7", "11", "13", "17", "19", "23", "29"),
      run_ok("sieve.lua"))
    assert.are.equal(lines("2", "3", "5"), run_ok("sieve.lua", "3"))
  end)

  it("mirrored: prints one of the three responses", function()
    local out = run_ok("mirrored.lua")
    local host = out:match("^response from (%a+)%.gopl%.io\n$")
    assert.is_truthy(host == "asia" or host == "europe" or host == "americas", out)
  end)

  it("mirrored_leak: the dump shows the two slower requests stuck in chan send", function()
    local out = run_ok("mirrored_leak.lua")
    assert.is_truthy(out:match("^response from %a+%.gopl%.io\n"), out)
    assert.is_truthy(out:find("goroutines still alive: 3 (main included)", 1, true), out)
    local sends = 0
    for _ in out:gmatch("goroutine %d+ %[chan send%]") do sends = sends + 1 end
    assert.are.equal(2, sends, out)
  end)

  it("select_priority: ch1 jobs always come first; version 1 spins, version 2 parks", function()
    assert.are.equal(lines(
      "== version 1: nested select with default (busy loop) ==",
      "job1 #1", "job1 #2", "job1 #3", "job2 #1", "job2 #2", "job2 #3",
      "worker: nothing to do, spun 100000 times without blocking",
      "bystander: ran only after the worker gave up",
      "== version 2: labelled loop (blocks when idle) ==",
      "job1 #1", "job1 #2", "job1 #3", "job2 #1", "job2 #2", "job2 #3",
      "worker2 idle: goroutine N [select]",
      "job1 #4", "job2 #4"), (run_ok("select_priority.lua"):gsub("goroutine %d+ ", "goroutine N ")))
  end)

  it("demo: runs every example and ends by itself", function()
    local p = assert(io.popen(("cd %s && %stimeout 20 lua5.4 examples/demo.lua 2>&1"):format(
      quote(root), ENV)))
    local out = p:read("a")
    local _, _, code = p:close()
    assert.are.equal(0, code, out)
    for _, name in ipairs{ "gosched", "goexit", "select_evenodd", "pipeline", "mirrored",
        "mirrored_leak", "select_priority", "sieve" } do
      assert.is_truthy(out:find("== " .. name .. ".lua: ", 1, true), name .. " missing:\n" .. out)
    end
    assert.is_falsy(out:find("FAILED", 1, true), out)
  end)
end)
