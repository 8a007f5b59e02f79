-- Execution trace: API.md "Observability" (CSP_TRACE, csp.trace.start/stop). The file is Chrome
-- trace-event JSON, or Perfetto's protobuf for .pftrace/.perfetto-trace/.pb; tools/tracefile.py
-- reads both (python3's json module; a strict decoder of the protobuf fields csp writes, checked
-- against Perfetto's schema) and the events of a known program are checked.
local csp = require "csp"
local run = require "spec.helpers.run"

-- Parses a trace with tools/tracefile.py and returns its events, one per line re-encoded as
-- "ph|tid|name|cat|id|ts|dur" (absent fields empty); nil and the error if invalid.
local function load(path)
  local py = [[
import sys
sys.path.insert(0, sys.argv[1])
import tracefile
ev = tracefile.load(sys.argv[2])
assert isinstance(ev, list)
for e in ev:
    assert e["ph"] in "XsfiM", e
    assert e.get("pid") == 1, e
    if e["ph"] != "M":
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0, e
    print("|".join(str(e.get(k, "")) for k in ("ph", "tid", "name", "cat", "id", "ts", "dur")))
    if e["ph"] == "M" and e["name"] == "thread_name":
        print("|".join(("N", str(e["tid"]), e["args"]["name"], "", "", "", "")))
]]
  local errf = os.tmpname()
  local p = assert(io.popen(("python3 -c %s %s %s 2>%s"):format(run.quote(py), run.quote(run.root .. "/tools"),
    run.quote(path), run.quote(errf))))
  local out = p:read("a")
  local ok = p:close()
  local f = io.open(errf)
  local err = f:read("a")
  f:close()
  os.remove(errf)
  if not ok then return nil, err end
  local evs = {}
  for line in out:gmatch("[^\n]+") do
    local ph, tid, name, cat, id, ts, dur = line:match("^(.-)|(.-)|(.-)|(.-)|(.-)|(.-)|(.-)$")
    evs[#evs + 1] = { ph = ph, tid = tonumber(tid), name = name, cat = cat, id = tonumber(id),
                      ts = tonumber(ts), dur = tonumber(dur) }
  end
  return evs
end

local function tmpname(ext)
  local t = os.tmpname()
  os.remove(t)
  return t .. ext
end

local function select_ev(evs, f)
  local t = {}
  for _, e in ipairs(evs) do if f(e) then t[#t + 1] = e end end
  return t
end

describe("csp.trace", function()
  for _, ext in ipairs({ ".json", ".pftrace" }) do
    it("records a known program in " .. ext .. ": tracks, slices, flows, blocks, timers and GC", function()
      local path = tmpname(ext)
      local ch, done = csp.chan(), csp.chan()
      assert.is_true(csp.trace.start(path))
      local function producer(n)
        for i = 1, n do ch:send(i) end
        ch:close()
      end
      local id = csp.go(producer, 3)
      local mu = csp.mutex()
      mu:lock()
      local locker = csp.go(function() mu:lock(); mu:unlock(); done:send(true) end)
      local sum = 0
      for v in ch:range() do sum = sum + v end
      mu:unlock()
      done:recv()
      csp.sleep(0.001)
      collectgarbage()
      collectgarbage()
      assert.is_true(csp.trace.stop())
      assert.are.equal(6, sum)
      local evs = assert(load(path))
      os.remove(path)
      -- one named track per goroutine, named by the function that started it
      local names = {}
      for _, e in ipairs(select_ev(evs, function(e) return e.ph == "N" end)) do names[e.tid] = e.name end
      assert.are.equal("G1 main", names[1])
      assert.are.equal("GC", names[0])
      assert.is_truthy(names[id]:match("^G" .. id .. " spec/trace_spec%.lua:%d+$"), names[id])
      assert.is_truthy(names[locker])
      -- running slices on the goroutine's track, named by its function
      local slices = select_ev(evs, function(e) return e.ph == "X" and e.tid == id end)
      assert.is_true(#slices >= 2)
      for _, s in ipairs(slices) do
        assert.are.equal(names[id]:match("^G%d+ (.*)$"), s.name)
        assert.is_true(s.dur >= 0)
      end
      assert.is_true(#select_ev(evs, function(e) return e.ph == "X" and e.tid == 1 and e.name == "main" end) >= 2)
      -- blocks with their reason
      local function has(f) return #select_ev(evs, f) > 0 end
      assert.is_true(has(function(e) return e.ph == "i" and e.tid == id and e.name == "chan send" end))
      assert.is_true(has(function(e) return e.ph == "i" and e.tid == 1 and e.name == "chan receive" end))
      assert.is_true(has(function(e) return e.ph == "i" and e.tid == locker and e.name == "sync.Mutex.Lock" end))
      assert.is_true(has(function(e) return e.ph == "i" and e.tid == id and e.name == "end" end))
      assert.is_true(has(function(e) return e.ph == "i" and e.tid == 1 and e.name == "sleep" end))
      assert.is_true(has(function(e)
        return e.ph == "i" and e.cat == "wake" and e.tid == 1 and e.name == "timer fired"
      end))
      assert.is_true(has(function(e) return e.ph == "i" and e.cat == "gc" end))
      -- flows: csp.go -> first run, send -> the receive it woke; every start has its finish
      local starts, finishes = {}, {}
      for _, e in ipairs(evs) do
        if e.ph == "s" then starts[e.id] = e elseif e.ph == "f" then finishes[e.id] = e end
      end
      local go, wake = false, false
      for fid, s in pairs(starts) do
        local f = finishes[fid]
        assert.is_truthy(f, "flow " .. fid .. " has no finish")
        assert.are.equal(s.name, f.name)
        assert.is_true(f.ts >= s.ts)
        -- the first run of the producer; main woken from its receive (only JSON's side flows,
        -- the second and later wakes of a slice, have names)
        local first = true
        for _, e in ipairs(evs) do if e.ph == "X" and e.tid == id and e.ts < f.ts then first = false end end
        if (s.name == "" or s.name == "go") and s.tid == 1 and f.tid == id and first then go = true end
        if (s.name == "" or s.name == "chan receive") and s.tid == id and f.tid == 1 then wake = true end
      end
      assert.is_true(go, "no flow from csp.go to the first run")
      assert.is_true(wake, "no flow from the producer's send to main's receive")
      -- every flow finish starts a slice of its track at that instant
      for _, f in pairs(finishes) do
        assert.is_true(has(function(e) return e.ph == "X" and e.tid == f.tid and e.ts == f.ts end))
      end
    end)
  end

  it("shows I/O waits and the loop's I/O completions", function()
    local path = os.tmpname()
    local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
    local got = csp.chan()
    assert.is_true(csp.trace.start(path))
    local reader = csp.go(function()
      local c = assert(ln:accept())
      got:send((c:read_line()))
      c:close()
    end)
    local c = assert(csp.net.dial("tcp", ln:addr()))
    c:write("ping\n")
    assert.are.equal("ping", got:recv())
    c:close()
    ln:close()
    assert.is_true(csp.trace.stop())
    local evs = assert(load(path))
    os.remove(path)
    local function has(f) return #select_ev(evs, f) > 0 end
    assert.is_true(has(function(e) return e.ph == "i" and e.tid == reader and e.name == "IO wait" end))
    assert.is_true(has(function(e) -- its accept and read park it: the event loop wakes it
      return e.ph == "i" and e.cat == "wake" and e.tid == reader and e.name == "I/O ready"
    end))
  end)

  for _, ext in ipairs({ ".json", ".perfetto-trace" }) do
    it("CSP_TRACE writes the whole run, closed at exit (and at os.exit): " .. ext, function()
      local path = tmpname(ext)
      local r = run.run([[
        local csp = require "csp"
        local c = csp.chan()
        csp.go(function() c:send("hi") end)
        print(c:recv())
      ]], { CSP_TRACE = path })
      assert.are.equal(0, r.code, r.stderr)
      local evs = assert(load(path))
      assert.is_true(#select_ev(evs, function(e) return e.ph == "X" and e.tid == 2 end) >= 1)
      r = run.run([[
        local csp = require "csp"
        csp.go(function() end)
        csp.gosched()
        os.exit(3)
      ]], { CSP_TRACE = path })
      assert.are.equal(3, r.code, r.stderr)
      evs = assert(load(path))
      assert.is_true(#select_ev(evs, function(e) return e.ph == "X" and e.tid == 2 end) >= 1)
      os.remove(path)
    end)

    it("CSP_TRACE traces the main state only: a csp.thread starts quietly: " .. ext, function()
      local path = tmpname(ext)
      local r = run.run([[
        local csp = require "csp"
        local t = csp.thread(function(x)
          local csp = require "csp"
          local c = csp.chan()
          csp.go(function() c:send(x) end)
          return c:recv() + 1
        end, 41)
        print(t:join())
      ]], { CSP_TRACE = path })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
      assert.are.equal("42\n", r.stdout)
      assert(load(path))
      os.remove(path)
    end)

    it("CSP_TRACE leaves a complete file when a goroutine's panic ends the program: " .. ext, function()
      local path = tmpname(ext)
      local r = run.run([[
        local csp = require "csp"
        local c = csp.chan()
        csp.go(function() c:send(1); error("boom") end)
        c:recv()
        csp.sleep(1)
      ]], { CSP_TRACE = path })
      assert.are_not.equal(0, r.code)
      assert.matches("boom", r.stderr)
      local evs = assert(load(path))
      assert.is_true(#select_ev(evs, function(e) return e.ph == "X" and e.tid == 2 end) >= 1)
      -- its last slice ends with a panic (Go's trace shows how a goroutine ended), not an "end"
      local why = select_ev(evs, function(e)
        return e.ph == "i" and e.tid == 2 and (e.cat == "" or e.cat == "block")
      end)
      assert.are.equal("panic", why[#why].name)
      assert.are.equal(0, #select_ev(evs, function(e) return e.ph == "i" and e.name == "end" end))
      os.remove(path)
    end)

    it("marks how goroutines ended: end, panic, goexit (unwinding or under xpcall): " .. ext, function()
      local path = tmpname(ext)
      local r = run.run([[
        local csp = require "csp"
        local wg = csp.waitgroup()
        local order = csp.chan(8)
        local function g(f)
          wg:add(1)
          csp.go(function() local _ <close> = csp.defer(wg.done, wg); f() end)
        end
        g(function() order:send("end") end)                      -- G2: returns
        g(function()                                             -- G3: unwinds, blocks in a <close>
          local _ <close> = csp.defer(function() csp.sleep(0.001) end)
          order:send("goexit"); csp.goexit()
        end)
        g(function()                                             -- G4: goexit under xpcall
          xpcall(function() order:send("goexit"); csp.goexit() end, debug.traceback)
        end)
        wg:wait()
        csp.go(function() error("boom") end)                                 -- G5
        csp.sleep(1)
      ]], { CSP_TRACE = path })
      assert.are_not.equal(0, r.code)
      assert.matches("boom", r.stderr)
      local evs = assert(load(path))
      local function last(tid)
        local why = select_ev(evs, function(e)  -- block instants: no category in JSON
          return e.ph == "i" and e.tid == tid and (e.cat == "" or e.cat == "block")
        end)
        return why[#why] and why[#why].name, why
      end
      assert.are.equal("end", (last(2)))
      local g3, all3 = last(3)
      assert.are.equal("goexit", g3)
      assert.are.equal("sleep", all3[#all3 - 1].name)  -- the <close> handler's wait, not "goexit"
      assert.are.equal("goexit", (last(4)))
      assert.are.equal("panic", (last(5)))
      os.remove(path)
    end)
  end

  it("writes flows as Chrome's flow events: a chain's hops as s and f of one id, other wakes apart", function()
    -- main's slice starts two goroutines: the first continues the chain that main's slice
    -- carries ("s" at main's slice end, "f" binding the woken slice's start, the same id, no
    -- name), the second is a side flow of its own (named go); block instants are
    -- thread-scoped by default and carry no category, nor do slices
    local path = tmpname(".json")
    local done = csp.chan()
    assert.is_true(csp.trace.start(path))
    local a = csp.go(function() done:send(1) end)
    local b = csp.go(function() done:send(2) end)
    done:recv()
    done:recv()
    assert.is_true(csp.trace.stop())
    local py = [==[
import json, sys
ev = json.load(open(sys.argv[1]))
a, b = int(sys.argv[2]), int(sys.argv[3])
keys = {"X": {"ph", "pid", "tid", "ts", "dur", "name"},
        "i": {"ph", "pid", "tid", "ts", "name", "cat", "s"}, "s": {"ph", "cat", "pid", "tid", "ts", "id", "name"},
        "f": {"ph", "bp", "cat", "pid", "tid", "ts", "id", "name"}, "M": {"ph", "pid", "tid", "name", "args"}}
for e in ev:
    assert set(e) <= keys[e["ph"]], e
    if e["ph"] == "i" and "cat" not in e:
        assert "s" not in e, e
    if e["ph"] in "sf":
        assert e["cat"] == "flow", e
def flow(name, tid):
    s = [e for e in ev if e["ph"] == "s" and e["tid"] == 1 and e.get("name") == name]
    f = [e for e in ev if e["ph"] == "f" and e["tid"] == tid and e["id"] == s[0]["id"] and e.get("name") == name]
    assert f[0]["bp"] == "e", f
    assert [e for e in ev if e["ph"] == "X" and e["tid"] == tid and e["ts"] == f[0]["ts"]], f
    assert [e for e in ev if e["ph"] == "X" and e["tid"] == 1 and round(e["ts"] + e["dur"], 3) == s[0]["ts"]], s
    return s[0]["id"]
chain = flow(None, a)
flow("go", b)
hops = [e["ph"] for e in ev if e["ph"] in "sf" and e["id"] == chain and "name" not in e]
assert len(hops) >= 2 and hops == ["s", "f"] * (len(hops) // 2) + ["s"] * (len(hops) % 2), hops
assert [e for e in ev if e["ph"] == "i" and e["tid"] == a and e["name"] == "end"], ev
print("ok")
]==]
    local p = assert(io.popen(("python3 -c %s %s %d %d 2>&1"):format(run.quote(py), run.quote(path), a, b)))
    local out = p:read("a")
    p:close()
    os.remove(path)
    assert.are.equal("ok\n", out)
  end)

  for _, ext in ipairs({ ".json", ".pftrace" }) do
    it("writes valid UTF-8 when a chunk name is not UTF-8 (a Latin-1 byte: its code point): " .. ext, function()
      local path = tmpname(ext)
      assert(csp.trace.start(path))
      for _, chunk in ipairs({ "@caf\233.lua", "@caf\195\169\"q.lua", "@bad\237\160\128.lua" }) do
        assert(_G.load("local csp = require 'csp'; local c = csp.chan(); " ..
          "csp.go(function() c:send(1) end); c:recv()", chunk))()
      end
      csp.trace.stop()
      local evs = assert(load(path))
      os.remove(path)
      local names = {}
      for _, e in ipairs(evs) do names[e.name] = true end
      assert.is_true(names["caf\195\169.lua:1"]) -- the byte 0xE9 as U+00E9
      assert.is_true(names["caf\195\169\"q.lua:1"]) -- well-formed UTF-8 kept as is
      assert.is_true(names["bad\195\173\194\160\194\128.lua:1"]) -- a surrogate's bytes, one by one
    end)
  end

  it("picks the format by extension, or by start's second argument", function()
    local function format(path)
      local f = assert(io.open(path, "rb"))
      local c = f:read(1)
      f:close()
      os.remove(path)
      return c == "[" and "json" or c == "\n" and "perfetto" or c  -- a Trace's packet tag is 0x0A
    end
    for ext, want in pairs({ [".json"] = "json", [".pftrace"] = "perfetto", [".perfetto-trace"] = "perfetto",
                             [".pb"] = "perfetto", [".trace"] = "json", [""] = "json" }) do
      local path = tmpname(ext)
      assert.is_true(csp.trace.start(path))
      assert.is_true(csp.trace.stop())
      assert.are.equal(want, format(path), ext)
    end
    local path = tmpname(".json")
    assert.is_true(csp.trace.start(path, "perfetto"))
    assert.is_true(csp.trace.stop())
    assert.are.equal("perfetto", format(path))
    path = tmpname(".pftrace")
    assert.is_true(csp.trace.start(path, "json"))
    assert.is_true(csp.trace.stop())
    assert.are.equal("json", format(path))
    assert.has_error(function() csp.trace.start(path, "xml") end, "bad argument #2 to 'start' (invalid option 'xml')")
    assert.has_error(function() csp.trace.start(path, 1) end, "bad argument #2 to 'start' (invalid option '1')")
  end)

  it("start fails cleanly: a second trace, an unwritable path, a bad argument", function()
    local path = os.tmpname()
    assert.is_true(csp.trace.start(path))
    local ok, err, code = csp.trace.start(path)
    assert.is_nil(ok)
    assert.are.equal("trace: tracing is already enabled", err)
    assert.are.equal("EBUSY", code)
    assert.is_true(csp.trace.stop())
    assert.is_false(csp.trace.stop())
    os.remove(path)
    local ok2, err2, code2 = csp.trace.start("/nonexistent-dir/x.json")
    assert.is_nil(ok2)
    assert.are.equal("open /nonexistent-dir/x.json: no such file or directory", err2)
    assert.are.equal("ENOENT", code2)
    assert.has_error(function() csp.trace.start() end, "bad argument #1 to 'start' (string expected, got no value)")
  end)

  for _, ext in ipairs({ ".json", ".pftrace" }) do
    it("can start inside a goroutine and stop in another, with goroutines already running: " .. ext, function()
      local path = tmpname(ext)
      local c, started, stop = csp.chan(), csp.chan(), csp.chan()
      local early = csp.go(function() for v in c:range() do local _ = v end end)
      csp.go(function() assert(csp.trace.start(path)); started:send(true) end)
      started:recv()
      for i = 1, 10 do c:send(i) end
      csp.go(function() stop:send(csp.trace.stop()) end)
      assert.is_true(stop:recv())
      c:close()
      local evs = assert(load(path))
      os.remove(path)
      local named = select_ev(evs, function(e) return e.ph == "N" and e.tid == early end)
      assert.are.equal(1, #named)
      assert.is_truthy(named[1].name:match("trace_spec%.lua:%d+$"))
      assert.is_true(#select_ev(evs, function(e) return e.ph == "X" and e.tid == early end) >= 1)
    end)

    it("names goroutines on records reused from an earlier trace's: " .. ext, function()
      -- a goroutine's trace name and flow live in its record's extension, kept with the record
      local path1, path2 = tmpname(ext), tmpname(ext)
      local function first() csp.gosched() end
      local function second() csp.gosched() end
      assert.is_true(csp.trace.start(path1))
      local a = csp.go(first)
      csp.run()
      assert.is_true(csp.trace.stop())
      assert.is_true(csp.trace.start(path2))
      local b = csp.go(second)  -- the record first ran on, first in the pool
      csp.run()
      assert.is_true(csp.trace.stop())
      local e1, e2 = assert(load(path1)), assert(load(path2))
      os.remove(path1)
      os.remove(path2)
      local function name(evs, tid)
        local named = select_ev(evs, function(e) return e.ph == "N" and e.tid == tid end)
        assert.are.equal(1, #named)
        return named[1].name
      end
      assert.are.equal("trace_spec.lua:" .. debug.getinfo(first, "S").linedefined, name(e1, a):match("[^/]+$"))
      assert.are.equal("trace_spec.lua:" .. debug.getinfo(second, "S").linedefined, name(e2, b):match("[^/]+$"))
      assert.are.equal(0, #select_ev(e2, function(e) return e.tid == a end))
      -- its wake by its own gosched is no flow; main's start of it is one
      assert.is_true(#select_ev(e2, function(e) return e.ph == "f" and e.tid == b end) >= 1)
    end)

    it("names a wg:go goroutine after the function it runs, not its C trampoline: " .. ext, function()
      local path = tmpname(ext)
      local function work() csp.gosched() end
      assert.is_true(csp.trace.start(path))
      local wg = csp.waitgroup()
      local id = wg:go(work)
      wg:wait()
      assert.is_true(csp.trace.stop())
      local evs = assert(load(path))
      os.remove(path)
      local named = select_ev(evs, function(e) return e.ph == "N" and e.tid == id end)
      assert.are.equal(1, #named)
      assert.are.equal("trace_spec.lua:" .. debug.getinfo(work, "S").linedefined, named[1].name:match("[^/]+$"))
    end)

    it("draws every wake of a slice that starts thousands of goroutines: " .. ext, function()
      -- in protobuf a slice's end carries the flows it started (one packet, written in pieces);
      -- past 4096 waiting for their slice's end, the rest start at instants of their own
      local path, n = tmpname(ext), 5000
      local wg = csp.waitgroup()
      assert.is_true(csp.trace.start(path))
      for _ = 1, n do wg:go(function() end) end
      wg:wait()
      assert.is_true(csp.trace.stop())
      local evs = assert(load(path))
      os.remove(path)
      local starts, ends = {}, 0
      for _, e in ipairs(evs) do
        if e.ph == "s" and e.tid == 1 then starts[e.id] = true end
      end
      for _, e in ipairs(evs) do
        if e.ph == "f" and starts[e.id] and e.tid > 1 then ends = ends + 1 end
      end
      assert.are.equal(n, ends)
    end)
  end

  for _, ext in ipairs({ ".json", ".pftrace" }) do
    it("examples/trace.lua's trace draws as SVG with tools/trace2svg.py: " .. ext, function()
      local trace, svg = tmpname(ext), os.tmpname()
      local r = run.run(("arg = { [0] = %q, %q }; dofile(arg[0])"):format(run.root .. "/examples/trace.lua", trace))
      assert.are.equal(0, r.code, r.stderr)
      assert.is_truthy(r.stdout:find("sum of squares 1..8 = 204 (8 jobs)", 1, true), r.stdout)
      local cmd = ("python3 %s/tools/trace2svg.py %s %s && python3 -c %s %s"):format(run.quote(run.root),
        run.quote(trace), run.quote(svg), run.quote([[
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
texts = [t.text for t in root.iter(ns + "text")]
assert "G1 main" in texts, texts
assert any(t and t.startswith("G2 ") for t in texts), texts
assert len(list(root.iter(ns + "rect"))) > 10
assert len(list(root.iter(ns + "line"))) > 10  # wake-up arrows among them
print("ok")
]]), run.quote(svg))
      local p = assert(io.popen(cmd .. " 2>&1"))
      local out = p:read("a")
      p:close()
      os.remove(trace)
      os.remove(svg)
      assert.are.equal("ok\n", out)
    end)
  end

  it("tools/tracefile.py rejects a malformed protobuf trace", function()
    local cases = {
      ["\10\5\80\1"] = "past the end",                    -- a packet longer than the file
      ["\10\2\64\128"] = "bad varint",                    -- a varint cut short
      ["\10\2\56\1"] = "unknown field 7",                 -- a field csp does not write
      ["\10\2\64"] = "length 2 past the end",
      ["\10\2\89\1"] = "track_event: wire type 1, not 2", -- a message as a fixed64
      ["\10\4\80\1\104\0"] = "does not clear",            -- the sequence is not cleared first
    }
    for bytes, want in pairs(cases) do
      local path = tmpname(".pftrace")
      local f = assert(io.open(path, "wb"))
      f:write(bytes)
      f:close()
      local evs, err = load(path)
      os.remove(path)
      assert.is_nil(evs)
      assert.is_truthy(err:find(want, 1, true), err)
    end
  end)
end)
