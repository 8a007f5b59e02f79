-- csp.leaks(): API.md "Observability". Goroutines parked forever on channels or sync objects that
-- nothing live (no runnable goroutine, timer, I/O or global) can reach, found by the collector.
local csp = require "csp"
local run = require "spec.helpers.run"

local function ids(list)
  local t = {}
  for _, e in ipairs(list) do t[#t + 1] = tonumber(e:match("^goroutine (%d+) ")) end
  return t
end

local function reasons(list)
  local t = {}
  for _, e in ipairs(list) do t[#t + 1] = e:match("^goroutine %d+ %[(.-)%]:") end
  return t
end

-- Every goroutine that is ready runs until it parks: main goes to the tail of the run queue.
local function settle()
  for _ = 1, 3 do csp.gosched() end
end

describe("csp.leaks", function()
  it("reports mirroredQuery's slower requests, stuck sending on a channel nobody holds", function()
    local function mirrored_query()
      local responses = csp.chan() -- the bug: unbuffered
      for _, host in ipairs { "asia", "europe", "americas" } do
        csp.go(function() responses:send("response from " .. host) end)
      end
      return (responses:recv())
    end
    local first = mirrored_query()
    assert.is_truthy(first:match("^response from"))
    settle()
    local leaks = csp.leaks()
    assert.are.same({ "chan send", "chan send" }, reasons(leaks))
    for _, e in ipairs(leaks) do
      assert.is_truthy(e:find("in method 'send'", 1, true), e)
      assert.is_truthy(e:find("leak_spec.lua:%d+"), e)
      assert.is_truthy(e:find("\ncreated by goroutine 1$"), e)
    end
    -- the same entry format as csp.dump()
    local dump = csp.dump()
    for _, e in ipairs(leaks) do assert.is_truthy(dump:find(e, 1, true), e) end
  end)

  it("reports makeThumbnails4's workers after the early return on the first error", function()
    local function make_thumbnails4(files)
      local errors = csp.chan()
      for _, f in ipairs(files) do
        csp.go(function()
          local err = (f == "b.jpg") and ("cannot decode " .. f) or nil
          errors:send(err)
        end)
      end
      for _ = 1, #files do
        local err = errors:recv()
        if err then return err end -- NOTE: incorrect: goroutine leak!
      end
    end
    local before = #csp.leaks()
    assert.are.equal("cannot decode b.jpg", make_thumbnails4 { "a.jpg", "b.jpg", "c.jpg", "d.jpg" })
    settle()
    local leaks = csp.leaks()
    assert.are.equal(before + 2, #leaks)
  end)

  it("reports crawl1's loop once the crawl is over: it waits on a worklist only it holds", function()
    local graph = { ["/"] = { "/a", "/b" }, ["/a"] = { "/b", "/c" }, ["/b"] = { "/" }, ["/c"] = {} }
    local pending = csp.waitgroup() -- lists sent and not yet processed
    pending:add(1)
    local crawler = csp.go(function()
      local worklist = csp.chan()
      local seen = {}
      csp.go(function() worklist:send({ "/" }) end)
      while true do -- crawl1: nothing ends this loop
        for _, link in ipairs(worklist:recv()) do
          if not seen[link] then
            seen[link] = true
            pending:add(1)
            csp.go(function() worklist:send(graph[link]) end)
          end
        end
        pending:done()
      end
    end)
    pending:wait()
    settle()
    local found = false
    for _, e in ipairs(csp.leaks()) do
      if e:match("^goroutine " .. crawler .. " %[chan receive%]") then found = true end
    end
    assert.is_true(found)
  end)

  it("reports goroutines parked on sync objects nobody else holds", function()
    local n = #csp.leaks()
    csp.go(function() local mu = csp.mutex(); mu:lock(); mu:lock() end)
    csp.go(function() local wg = csp.waitgroup(); wg:add(1); wg:wait() end)
    csp.go(function() local mu = csp.mutex(); local cv = csp.cond(mu); mu:lock(); cv:wait() end)
    csp.go(function() csp.select {} end)
    csp.go(function() local s = csp.semaphore(1); s:acquire(2) end) -- more than its size: doomed
    settle()
    local leaks = csp.leaks()
    assert.are.equal(n + 5, #leaks)
    local rs = {}
    for i = n + 1, #leaks do rs[#rs + 1] = reasons(leaks)[i] end
    assert.are.same({ "sync.Mutex.Lock", "sync.WaitGroup.Wait", "sync.Cond.Wait", "select (no cases)",
      "semacquire" }, rs)
  end)

  it("judges a goroutine parked in a select of several cases (their channels in the cases' user values)", function()
    -- a case holds 3 user values: finding the channel in them left push_owner's stack short
    -- (a crash, found by fuzzing) whenever an earlier case was not the one
    local n = #csp.leaks()
    local a, b, c, d = csp.chan(), csp.chan(), csp.chan(), csp.chan()
    local held = csp.go(function() csp.select { csp.recv(a), csp.recv(b), csp.recv(c), csp.send(d, 1) } end)
    local lost = csp.go(function()
      local w, x, y, z = csp.chan(), csp.chan(), csp.chan(), csp.chan()
      csp.select { csp.recv(w), csp.send(x, 2), csp.recv(y), csp.recv(z) }
    end)
    settle()
    local leaks = csp.leaks()
    assert.are.equal(n + 1, #leaks, tostring(leaks))
    assert.are.equal(lost, ids(leaks)[n + 1])
    assert.are.equal("select", reasons(leaks)[n + 1])
    assert.is_true(held ~= lost)
    a:send(1) -- the held one still works
    settle()
  end)

  it("raises in a finalizer, where the collection it needs does nothing, and forgets nothing", function()
    local n = #csp.leaks()
    local lost = csp.go(function() csp.chan():recv() end)
    settle()
    assert.are.equal(n + 1, #csp.leaks())
    local ok, err
    setmetatable({}, { __gc = function() ok, err = pcall(csp.leaks) end })
    collectgarbage()
    assert.is_false(ok)
    assert.matches("csp.leaks: cannot run in a finalizer", err, 1, true)
    local leaks = csp.leaks()
    assert.are.equal(n + 1, #leaks) -- still reported (an empty list from __gc forgot it)
    assert.are.equal(lost, ids(leaks)[n + 1])
  end)

  it("does not report a goroutine whose channel a live goroutine, a global or a timer reaches", function()
    local before = ids(csp.leaks())
    local quit = csp.chan()
    local held = csp.chan()
    local mine = {}
    -- held by a sleeping goroutine (the timer heap keeps it)
    mine[#mine + 1] = csp.go(function() held:recv() end)
    csp.go(function() csp.sleep(60); held:send(1) end)
    -- held by a goroutine blocked on a channel the main thread holds
    local inner = csp.chan()
    mine[#mine + 1] = csp.go(function() inner:recv() end)
    mine[#mine + 1] = csp.go(function() quit:recv(); inner:send(1) end)
    -- held by a global
    local global = csp.chan()  -- (the goroutine reads no global: no race under CSP_RACE=1)
    _G.LEAK_SPEC_GLOBAL = global
    mine[#mine + 1] = csp.go(function() global:recv() end)
    -- a select whose other case is an armed timer
    mine[#mine + 1] = csp.go(function() csp.select { csp.recv(csp.chan()), csp.recv(csp.after(60)) } end)
    -- parked on a channel between threads: another thread may wake it
    mine[#mine + 1] = csp.go(function() csp.xchan():recv() end)
    -- a runnable goroutine holds it
    local busy = csp.chan()
    mine[#mine + 1] = csp.go(function() busy:recv() end)
    settle()
    csp.go(function() local _ = busy end) -- not run yet when leaks() collects
    local now = csp.leaks()
    assert.are.same(before, ids(now), tostring(now))
    _G.LEAK_SPEC_GLOBAL = nil
    quit:close()
    settle()
  end)

  it("reports a goroutine only a leaked goroutine reaches (its channel is in the other's locals)", function()
    local before = #csp.leaks()
    local a, b
    do
      local ch1, ch2 = csp.chan(), csp.chan()
      a = csp.go(function()  -- parked on ch1 forever, holding ch2
        local held = ch2
        ch1:recv()
        held:send(1)
      end)
      b = csp.go(function(c) c:recv() end, ch2)  -- parked on ch2: only a reaches it
    end
    settle()
    local now = ids(csp.leaks())
    assert.are.equal(before + 2, #now)
    assert.are.same({ a, b }, { now[#now - 1], now[#now] })
  end)

  it("reports it also when the holder was found leaked by an earlier call", function()
    local ch2 = csp.chan()
    local a
    do
      local ch1 = csp.chan()
      a = csp.go(function(held) ch1:recv(); held:send(1) end, ch2)
    end
    settle()
    local first = ids(csp.leaks())  -- a, found: its channel is finalized, a stays parked
    assert.are.equal(a, first[#first])
    local b = csp.go(function(c) c:recv() end, ch2)
    ch2 = nil -- luacheck: ignore
    settle()
    local now = ids(csp.leaks())
    assert.are.equal(#first + 1, #now)
    assert.are.same({ a, b }, { now[#now - 1], now[#now] })
    assert.are.same(now, ids(csp.leaks()))  -- and again
  end)

  it("keeps reporting the same goroutines, which stay parked and dumped", function()
    local function leak()
      local c = csp.chan()
      return csp.go(function() c:recv() end)
    end
    local id = leak()
    settle()
    local n = csp.numgoroutine()
    local a = ids(csp.leaks())
    local b = ids(csp.leaks())
    assert.are.same(a, b)
    local found = false
    for _, x in ipairs(a) do if x == id then found = true end end
    assert.is_true(found)
    assert.are.equal(n, csp.numgoroutine())
    assert.is_truthy(csp.dump():find("goroutine " .. id .. " [chan receive]", 1, true))
  end)

  it("works from a goroutine, and tostring joins the entries", function()
    local out = csp.chan(1)
    csp.go(function()
      local c = csp.chan()
      csp.go(function() c:send(1) end)
      csp.gosched()
      c = nil -- luacheck: ignore
      out:send(csp.leaks())
    end)
    local leaks = out:recv()
    assert.is_true(#leaks >= 1)
    local s = tostring(leaks)
    assert.are.equal(table.concat(leaks, "\n\n"), s)
  end)
end)

describe("CSP_LEAKS=1", function()
  it("prints the leaked goroutines on stderr when the script ends", function()
    local r = run.run([[
      local csp = require "csp"
      local function query()
        local ch = csp.chan()
        for i = 1, 3 do csp.go(function() ch:send(i) end) end
        return ch:recv()
      end
      local ch = csp.chan()   -- a local of the main chunk: dead once the chunk returns
      csp.go(function() ch:recv() end)
      print((query()))
      csp.gosched()
    ]], { CSP_LEAKS = "1" })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("1\n", r.stdout)
    assert.is_truthy(r.stderr:find("csp: 3 leaked goroutines (blocked forever, unreachable):", 1, true), r.stderr)
    local n = 0
    for _ in r.stderr:gmatch("goroutine %d+ %[chan %a+%]:") do n = n + 1 end
    assert.are.equal(3, n, r.stderr)
  end)

  it("prints nothing when nothing leaked, and nothing without the variable", function()
    local r = run.run([[
      local csp = require "csp"
      local ch = csp.chan()
      csp.go(function() ch:send(1) end)
      print(ch:recv())
    ]], { CSP_LEAKS = "1" })
    assert.are.equal(0, r.code)
    assert.are.equal("", r.stderr)
    r = run.run([[
      local csp = require "csp"
      csp.go(function() csp.chan():recv() end)
      csp.gosched()
    ]])
    assert.are.equal("", r.stderr)
  end)

  it("runs mirrored_leak.lua's report at exit", function()
    local r = run.run(([[arg = { [0] = %q }; dofile(%q)]]):format(
      run.root .. "/examples/mirrored_leak.lua", run.root .. "/examples/mirrored_leak.lua"),
      { CSP_LEAKS = "1" })
    assert.are.equal(0, r.code, r.stderr)
    assert.is_truthy(r.stderr:find("2 leaked goroutines", 1, true), r.stderr)
  end)
end)
