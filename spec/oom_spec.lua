-- Memory errors inside the scheduler: a Lua host (spec/helpers/oomhost.c) whose allocator fails
-- past a limit the script sets runs the same workload at many limits, so the error hits every
-- place in turn: the goroutine's body, csp.go, and the loop making a goroutine's thread.
local run = require "spec.helpers.run"

-- Builds the host once.
local host
local function build()
  host = host or run.cc(os.tmpname(), "oomhost.c", "$(pkg-config --cflags --libs lua5.4) -Wl,-E")
  return host
end

-- Runs code under the host; returns stdout, stderr, exit status.
local function oomrun(code)
  local script, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local ok, _, st = os.execute(("%s timeout -k 2 120 %s %s >%s 2>%s"):format(run.env,
    run.quote(build()), run.quote(script), run.quote(out), run.quote(err)))
  local function slurp(p)
    local h = assert(io.open(p))
    local s = h:read("a")
    h:close()
    os.remove(p)
    return s
  end
  os.remove(script)
  return slurp(out), slurp(err), ok and 0 or st
end

describe("a memory error in the scheduler loop", function()
  teardown(function() if host then os.remove(host) end end)

  it("leaves the loop whole: the next blocking call runs it again", function()
    -- More goroutines blocked at once than the thread pool keeps (1024): the loop makes threads.
    local out, err, st = oomrun([[
local csp = require "csp"
local failures, broken, first = 0, 0, nil
for budget = 0, 240000, 4999 do
  local ok, e = pcall(function()
    memlimit(budget)
    csp.run(function()
      local c = csp.chan()
      for _ = 1, 1100 do csp.go(function() c:recv() end) end
      c:close()
    end)
  end)
  memlimit(nil)
  if not ok then
    failures = failures + 1
    local ok2, e2 = pcall(function()
      local c = csp.chan()
      csp.go(function() c:send(1) end)
      assert(c:recv() == 1)
    end)
    if not ok2 then
      broken = broken + 1
      first = first or (tostring(e) .. " | then: " .. tostring(e2))
    end
  end
end
print(failures, broken, first)
]])
    assert.are.equal(0, st, err)
    local failures, broken = out:match("^(%d+)\t(%d+)")
    assert.is_truthy(tonumber(failures) > 10, out)
    assert.are.equal("0", broken, out)
  end)
end)
