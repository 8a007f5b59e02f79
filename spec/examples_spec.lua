-- Runs each example as a real subprocess and checks its output where it is deterministic.
local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end  -- runs from elsewhere too

local function quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

local ENV = ("LUA_PATH=%s LUA_CPATH=%s "):format(
  quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
  -- the parent's module path: under `make asan` the examples load the sanitized build too
  quote(os.getenv("LUA_CPATH") or (root .. "/build/?.so;;")))

-- Runs examples/<name> with args; returns stdout, exit code, stderr. `timeout` turns a
-- hung example into a failure instead of a hung spec. dir: where to run it from (default the
-- repository, with the script named relative to it). pre: words before the environment
-- (e.g. "env -u CSP_RACE ").
local function run(name, args, dir, pre)
  local errf = os.tmpname()
  local script = dir and quote(root .. "/examples/" .. name) or "examples/" .. name
  local p = assert(io.popen(("cd %s && %s%stimeout 20 lua5.4 %s %s </dev/null 2>%s"):format(
    quote(dir or root), pre or "", ENV, script, args or "", quote(errf))))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = assert(io.open(errf))
  local err = f:read("a")
  f:close()
  os.remove(errf)
  return out, code, err
end

-- Runs an example and asserts it exited with status 0; returns its stdout.
local function run_ok(name, args, pre)
  local out, code, err = run(name, args, nil, pre)
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
      "bystander: ran only once the spinning worker gave up",
      "== version 2: labelled loop (blocks when idle) ==",
      "job1 #1", "job1 #2", "job1 #3", "job2 #1", "job2 #2", "job2 #3",
      "worker2 idle: goroutine N [select]",
      "job1 #4", "job2 #4"), (run_ok("select_priority.lua"):gsub("goroutine %d+ ", "goroutine N ")))
  end)

  it("demo: runs the examples and the network scenes, and ends by itself", function()
    local p = assert(io.popen(("cd %s && %stimeout 120 lua5.4 examples/demo.lua 2>&1"):format(
      quote(root), ENV)))
    local out = p:read("a")
    local _, _, code = p:close()
    assert.are.equal(0, code, out)
    for _, name in ipairs{ "gosched", "goexit", "select_evenodd", "pipeline", "mirrored",
        "mirrored_leak", "select_priority", "sieve", "bank1", "bank3", "icons", "memo4",
        "thumbnails", "chat", "clock2" } do
      assert.is_truthy(out:find("== " .. name .. ".lua: ", 1, true), name .. " missing:\n" .. out)
    end
    assert.is_truthy(out:find("makeThumbnails6", 1, true), out)
    assert.is_truthy(out:find("bob   | 127.0.0.1:%d+: Hi!"), out)
    assert.is_truthy(out:find("all goroutines are asleep - deadlock!", 1, true), out)
    assert.is_falsy(out:find("FAILED", 1, true), out)
  end)
end)

describe("bank examples (seed 2.1-2.2)", function()
  local FINAL = "1000 goroutines deposited 100 and withdrew 60 each (0 withdrawals refused)\n"
    .. "balance: 40000\n"

  it("bank1: the teller goroutine keeps the exact balance", function()
    assert.are.equal(FINAL, run_ok("bank1.lua"))
  end)

  it("bank2: the mutex keeps it exact although each section yields", function()
    assert.are.equal(FINAL, run_ok("bank2.lua"))
  end)

  it("bank3: the relocking Withdraw ends in the deadlock report, not a hang", function()
    local out, code, err = run("bank3.lua")
    assert.are.equal(1, code, err)
    assert.matches("^1000 goroutines deposit 100 and withdraw 60 each", out)
    assert.is_truthy(err:find("fatal error: all goroutines are asleep - deadlock!", 1, true), err)
    assert.is_truthy(err:find("goroutine 1 [sync.WaitGroup.Wait]:", 1, true), err)
    -- the first customer waits for the mutex it holds itself, inside Withdraw's Deposit
    local first = err:match("\n(goroutine 2 %[sync%.Mutex%.Lock%]:.-)\n\n")
    assert.is_truthy(first, err)
    assert.is_truthy(first:find("in upvalue 'Withdraw'", 1, true), first)
    assert.is_truthy(first:find("(held by goroutine 2)", 1, true), first)
    local waiting = 0
    for _ in err:gmatch("goroutine %d+ %[sync%.Mutex%.Lock%]") do waiting = waiting + 1 end
    assert.are.equal(1000, waiting)
  end)

  it("bank4: the fix, exact", function()
    assert.are.equal(FINAL, run_ok("bank4.lua"))
  end)

  it("bank_rw: readers share the lock, never with a writer; exact", function()
    local out = run_ok("bank_rw.lua")
    assert.matches("balance: 40000\n$", out)
    local n = tonumber(out:match("readers inside at once: up to (%d+); a writer inside with readers: never\n"))
    assert.is_truthy(n, out)
    assert.is_true(n > 1, out)
  end)

  it("a smaller bank, by argument", function()
    assert.matches("balance: 400\n$", run_ok("bank4.lua", "10"))
  end)
end)

describe("icons and pool (seed 2.3)", function()
  it("icons: loadIcons runs once with 100 concurrent callers, in both versions", function()
    local out = run_ok("icons.lua")
    local n = 0
    for _ in out:gmatch("loadIcons ran 1 time%(s%); 100 of 100 concurrent callers got their icon") do
      n = n + 1
    end
    assert.are.equal(2, n, out)
    assert.is_truthy(out:find("version 1: sync.RWMutex, double-checked\n", 1, true), out)
    assert.is_truthy(out:find("version 2: csp.once (sync.Once)\n", 1, true), out)
  end)

  it("pool: new is called once per buffer in use at the same time", function()
    assert.are.equal(lines(
      "1. 1000 lines, buffer used without yielding: new called 1 time(s)",
      "2. 1000 lines, 8 workers yielding while holding a buffer: new called 8 time(s)",
      "3. 1000 lines without a pool: 1000 buffers allocated",
      "after a garbage collection: the next get called new 1 time(s)"), run_ok("pool.lua"))
  end)
end)

describe("memo1-memo5 (seed 2.6)", function()
  -- Runs memoN with args: the per-get lines, the total in ms and the number of calls.
  local function memo(n, args)
    -- memo1's race is reported under `make race` (CSP_RACE=1): its own spec below checks that
    local out = run_ok(("memo%d.lua"):format(n), args, n == 1 and "env -u CSP_RACE " or nil)
    local gets = 0
    for _ in out:gmatch("\n  %S+ +%d+ ms  %d+ bytes") do gets = gets + 1 end
    local ms, calls = out:match("20 gets of 10 keys by 20 concurrent goroutines in (%d+) ms; f called (%d+) times\n")
    assert.is_truthy(ms, out)
    assert.are.equal(20, gets, out)
    assert.is_falsy(out:find("wrong", 1, true), out)
    return out, tonumber(ms), tonumber(calls)
  end

  it("memo1: no lock: the table is intact but every duplicate key is computed again", function()
    local out, _, calls = memo(1)
    assert.are.equal(20, calls)
    assert.is_truthy(out:find("under cooperative scheduling the table is not corrupted", 1, true), out)
    assert.is_truthy(out:find("10 of 20 calls were duplicates", 1, true), out)
  end)

  it("memo1 under CSP_RACE=1: the detector reports the race on the cache, as go test -race does", function()
    local out, code, err = run("memo1.lua", "-delay 0.01", nil, "env CSP_RACE=1 ")
    assert.are.equal(66, code, err)
    assert.is_truthy(out:find("f called 20 times", 1, true), out)
    assert.matches("WARNING: DATA RACE\nWrite at memo1 cache%[\"/[%w.]+\"%] by goroutine %d+:\n"
      .. "  examples/memo1%.lua:%d+", err)
    assert.matches("Previous %a+ at memo1 cache%[", err)
  end)

  it("memo2: one mutex around the call serialises the ten calls", function()
    local _, ms, calls = memo(2, "-delay 0.05")
    assert.are.equal(10, calls)
    assert.is_true(ms >= 10 * 50 - 5, "serialised calls cannot take less than 10 delays: " .. ms)
  end)

  it("memo3: two-phase locking makes duplicate calls", function()
    local _, _, calls = memo(3)
    assert.are.equal(20, calls)
  end)

  it("memo4 and memo5 call f once per key", function()
    assert.are.equal(10, select(3, memo(4)))
    assert.are.equal(10, select(3, memo(5)))
  end)

  it("-http: the function is a real csp.http.get of a local server", function()
    local out, _, calls = memo(4, "-http")
    assert.are.equal(10, calls)
    assert.is_truthy(out:find("http://127.0.0.1:%d+/golang.org +%d+ ms  19 bytes"), out)
    assert.are.equal(20, select(3, memo(3, "-http -delay 0.05")))
  end)
end)

describe("command lines (examples/flags.lua, Go's flag package)", function()
  local function bad(name, args, problem)
    local out, code, err = run(name, args)
    assert.are.equal(2, code, err)
    assert.are.equal("", out)
    local first = err:match("^[^\n]*")
    assert.are.equal(problem, first)
    assert.matches("\nusage: " .. name:gsub("%.", "%%."), err)
    assert.is_falsy(err:find("traceback", 1, true), err)
  end

  it("a malformed or missing value, an unknown flag: one line, the usage, status 2", function()
    bad("crawl2.lua", "-depth abc http://x/", 'invalid value "abc" for flag -depth: not an integer')
    bad("crawl1.lua", "-depth", "flag needs an argument: -depth")
    bad("crawl3.lua", "-depth 2", "missing URL")
    bad("countdown1.lua", "3 0", 'invalid value "0" for INTERVAL: must be positive')
    bad("sieve.lua", "abc", 'invalid value "abc" for N: not an integer')
    bad("sieve.lua", "3 4", "too many arguments: 4")
    bad("bank1.lua", "-x", "flag provided but not defined: -x")
    bad("thumbnails.lua", "8 a.jpg", "VERSION must be 1 to 7")
    bad("thumbnails.lua", "6", "missing FILE")
    bad("memo4.lua", "-delay=-1", 'invalid value "-1" for flag -delay: must be positive')
    bad("du2.lua", "-q", "flag provided but not defined: -q")
  end)

  it("-help and --help print the usage and exit 0; servers do not listen", function()
    for _, case in ipairs{ { "chat.lua", "--help" }, { "clock2.lua", "-help" },
        { "reverb1.lua", "--help" }, { "crawl2.lua", "-help" }, { "sieve.lua", "-h" },
        { "memo1.lua", "--help" }, { "du1.lua", "--help" } } do
      local out, code, err = run(case[1], case[2])
      assert.are.equal(0, code, case[1] .. ": " .. err)
      assert.are.equal("", out)
      assert.matches("^usage: " .. case[1]:gsub("%.", "%%."), err)
    end
  end)

  it("value forms: -name=value, --name value, a bool with =false", function()
    assert.matches("f called 10 times", run_ok("memo5.lua", "--delay 0.01"))
    assert.matches("f called 10 times", run_ok("memo5.lua", "-delay=0.01 -http=false"))
    assert.are.equal(lines("2", "3"), run_ok("sieve.lua", "-- 2"))
  end)

  it("an example run from another directory finds its helper modules", function()
    local dir = os.getenv("TMPDIR") or "/tmp"
    local _, code, err = run("crawl2.lua", "--help", dir)
    assert.are.equal(0, code, err)
    assert.matches("^usage: crawl2%.lua", err)
    local d = io.popen("mktemp -d"):read("l")
    local fh = assert(io.open(d .. "/f", "w"))
    fh:write("hello")
    fh:close()
    assert.are.equal("1 files  5 bytes\n", (run("du1.lua", "-b " .. quote(d), dir)))
    os.remove(d .. "/f")
    os.remove(d)
  end)
end)
