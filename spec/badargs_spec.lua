-- Every public function and method against a table of bad arguments (issue 9 "keep it from
-- coming back"): each bad call raises an error whose message names the function, luaL-style
-- (`bad argument #n to 'name' (...)`, `calling 'name' on bad self`), and never crashes (this
-- file runs under `make asan` with the rest of the suite). The functions are enumerated from
-- the csp table and from the metatables of one object of every type; the spec fails when one
-- has no entry below, so a new function comes with its bad-argument cases.
local csp = require "csp"

local NAN, INF = 0 / 0, math.huge
local foreign = io.stdout                    -- a userdata of another library
local co = coroutine.create(function() end)

-- Values that are no X, for each kind of parameter. A kind ending in "?" also accepts nil.
local no = {}
local function list(...)
  local t = {}
  for _, l in ipairs { ... } do for _, v in ipairs(l) do t[#t + 1] = v end end
  return t
end
no.fn = { true, {}, foreign, co, 1, "x" }
no.num = list({ true, {}, function() end, foreign, co, "x", NAN })
no.int = list(no.num, { 1.5, INF, -INF, 2 ^ 63, -2 ^ 63 - 1e5 })
no.str = { true, {}, function() end, foreign, co }   -- numbers convert to strings, as in Lua
no.tbl = { true, 1, "x", function() end, foreign, co }
no.ctx = list(no.tbl, { {}, csp.chan() })
no.chan = { true, 1, "x", {}, function() end, foreign, co, csp.mutex() }
no.locker = { true, 1, "x", {}, function() end, foreign, co, csp.chan() }
no.rw = { true, 1, "x", {}, function() end, co, csp.mutex() }  -- io.stdout has read and write
no.xchan = { true, 1, "x", {}, function() end, foreign, co, csp.chan() }
no.thr = { true, 1, {}, foreign, co }      -- a function or a module name
no.val = { function() end, foreign, co }    -- no value that can cross threads
no.obj = { true, 1 }                        -- no value to hang a clock on (strings are, interned)
no.key = { NAN }                             -- and nil, added below for the required kinds
no.any = {}                                  -- nil only

local kinds = {}
for k, v in pairs(no) do
  kinds[k .. "?"] = v
  kinds[k] = list({ "<nil>" }, v)
end

-- The objects, made fresh for each call (a call may close or lock its receiver).
local ln0 = assert(csp.net.listen("tcp", "127.0.0.1:0"))
local function conn()
  local c = assert(csp.net.dial("tcp", ln0:addr()))
  assert(ln0:accept())
  return c
end
local make = {
  chan = function() return csp.chan(1) end,
  timer = function() return csp.timer(3600) end,
  ticker = function() return csp.ticker(3600) end,
  afterfunc = function() -- stopped: a pending call would keep deadlock detection waiting
    local t = csp.after_func(3600, function() end)
    t:stop()
    return t
  end,
  mutex = csp.mutex, rwmutex = csp.rwmutex, waitgroup = csp.waitgroup, once = csp.once,
  cond = function() return csp.cond(csp.mutex()) end,
  semaphore = function() return csp.semaphore(2) end,
  pool = function() return csp.pool() end,
  context = function() return (csp.with_cancel(csp.background())) end,
  group = function() return (csp.group()) end,
  memo = function() return csp.memo(function(k) return k end) end,
  listener = function() return assert(csp.net.listen("tcp", "127.0.0.1:0")) end,
  conn = conn,
  process = function() return assert(csp._spawn("true")) end,
  xchan = function() return csp.xchan(1) end,
  thread = function() return csp.thread(function() end) end,
  syncmap = csp.syncmap,
  atomicint = function() return csp.atomic.int() end,
  atomicvalue = function() return csp.atomic.value() end,
}

-- name -> kinds of its parameters (after self for methods) and valid values to fill the others.
local F = {
  ["csp.go"] = { { "fn" } }, ["csp._go_internal"] = { { "fn" } },
  ["csp.gosched"] = { {} }, ["csp.numgoroutine"] = { {} }, ["csp.goid"] = { {} },
  ["csp.leaks"] = { {} }, ["csp.trace.start"] = { { "str" } }, ["csp.trace.stop"] = { {} },
  ["csp.stats"] = { {} }, ["csp.dump"] = { {} }, ["csp.now"] = { {} }, ["csp.background"] = { {} },
  ["csp.goexit"] = "ends the calling goroutine: covered by sched_spec",
  ["csp.run"] = { { "fn?" }, main = true },
  ["csp.step"] = { { "num?" }, main = true },
  ["csp.seed"] = { { "int" } },
  ["csp.chan"] = { { "int?" }, extra = { { math.maxinteger }, { -1 }, { 1 << 40 } } },
  ["csp.select"] = { { "tbl" }, extra = { { { 1 } }, { { csp.chan() } }, { { default = "x" } },
    { { default = {} } } } },
  ["csp.recv"] = { { "chan?" } },                -- nil: Go's nil channel, never ready
  ["csp.send"] = { { "chan?" } },
  ["csp.sleep"] = { { "num" } }, ["csp.after"] = { { "num" } }, ["csp.tick"] = { { "num" } },
  ["csp.ticker"] = { { "num" }, extra = { { 0 }, { -1 } } },
  ["csp.timer"] = { { "num" } },
  ["csp.after_func"] = { { "num", "fn" } }, ["csp._after_func"] = { { "num", "fn" } },
  -- ids that no internal call owns (a valid one would stop someone's deadline)
  ["csp._after_stop"] = { { "int" }, extra = { { 0 }, { -1 }, { 1 << 40 } } },
  ["csp.mutex"] = { {} }, ["csp.rwmutex"] = { {} }, ["csp.waitgroup"] = { {} }, ["csp.once"] = { {} },
  ["csp.semaphore"] = { { "int" }, extra = { { -1 } } },
  ["csp.cond"] = { { "locker" } },
  ["csp.fs.stat"] = { { "str" } }, ["csp.fs.lstat"] = { { "str" } },
  ["csp.fs.readdir"] = { { "str" } }, ["csp.fs.dirstat"] = { { "str" } },
  ["csp.fs.readfile"] = { { "str" } },
  ["csp.fs.writefile"] = { { "str", "str", "int?" }, valid = { "/dev/null", "" },
    extra = { { "/dev/null", "", -1 }, { "/dev/null", "", 1 << 40 } } },
  ["csp.net.listen"] = { { "str", "str" }, valid = { "tcp", "127.0.0.1:0" } },
  ["csp.net.dial"] = { { "str", "str", "tbl?" }, valid = { "tcp", "127.0.0.1:1" },
    extra = { { "tcp", "127.0.0.1:1", { timeout = "x" } }, { "tcp", "127.0.0.1:1", { timeout = NAN } } } },
  ["csp.html._hrefs"] = { { "str" } },
  ["csp.html.links"] = { { "str", "str" }, valid = { "", "http://x/" }, extra = { { "", "rel" } } },
  ["csp._spawn"] = { { "str", "tbl?", "tbl?" }, valid = { "true" } },
  ["csp.exec"] = { { "str", "tbl?", "tbl?" }, valid = { "true" },
    extra = { { "true", { 1 } }, { "true", {}, { ctx = 1 } }, { "true", {}, { stdin = {} } },
      { "true", {}, { cwd = 1 } }, { "true", {}, { env = 1 } }, { "true", {}, { env = { 1 } } } } },
  ["csp.defer"] = { { "fn" } }, ["csp.oncefunc"] = { { "fn" } }, ["csp.pool"] = { { "fn?" } },
  ["csp.memo"] = { { "fn" } }, ["csp.group"] = { { "ctx?" } },
  ["csp.with_cancel"] = { { "ctx" } },
  ["csp.with_deadline"] = { { "ctx", "num" }, valid = { csp.background() } },
  ["csp.with_timeout"] = { { "ctx", "num" }, valid = { csp.background() } },
  ["csp.with_value"] = { { "ctx", "any" }, valid = { csp.background() } },
  ["csp.io.copy"] = { { "rw", "rw" }, valid = { csp.stderr, csp.stdin } },
  ["csp.url.parse"] = { { "str" } }, ["csp.url._absolute"] = { { "str" } },
  ["csp.url.resolve"] = { { "str", "str" }, valid = { "", "" } },
  ["csp.url.format"] = { { "tbl" }, extra = { { { port = 1.5, host = "h" } }, { { host = 1 } },
    { { port = 80 } } } },
  ["csp.http.get"] = { { "str", "tbl?" }, valid = { "http://127.0.0.1:1/" },
    extra = { { "http://127.0.0.1:1/", { timeout = "x" } }, { "http://127.0.0.1:1/", { max_body = -1 } },
      { "http://127.0.0.1:1/", { headers = 1 } } } },
  ["csp.http.close_idle"] = { {} }, ["csp.http.idle_count"] = { {} },
  ["csp.http.request"] = { { "tbl" }, valid = { { url = "http://127.0.0.1:1/" } },
    extra = { { { url = 1 } }, { { url = "http://127.0.0.1:1/", timeout = -1 } },
      { { url = "http://127.0.0.1:1/", sink = 1 } }, { { url = "http://127.0.0.1:1/", body = true } },
      { { url = "http://127.0.0.1:1/", method = "A B" } } } },
  ["csp.http.post"] = { { "str", "str", "any?", "tbl?" }, valid = { "http://127.0.0.1:1/", "text/plain" },
    extra = { { "http://127.0.0.1:1/", "text/plain", true }, { "http://127.0.0.1:1/", "text/plain", "", 1 } } },

  ["chan:send"] = { {} }, ["chan:recv"] = { {} }, ["chan:close"] = { {} },
  ["chan:range"] = { {} }, ["chan:try_send"] = { {} }, ["chan:try_recv"] = { {} },
  ["chan:len"] = { {} }, ["chan:cap"] = { {} }, ["chan:base"] = { {} },
  ["chan:sender"] = { {} }, ["chan:receiver"] = { {} },
  ["timer:stop"] = { {} }, ["timer:reset"] = { { "num" } },
  ["afterfunc:stop"] = { {} }, ["afterfunc:reset"] = { { "num" } },
  ["ticker:stop"] = { {} }, ["ticker:reset"] = { { "num" }, extra = { { 0 }, { -1 } } },
  ["mutex:lock"] = { {} }, ["mutex:unlock"] = { {} }, ["mutex:trylock"] = { {} },
  ["rwmutex:lock"] = { {} }, ["rwmutex:unlock"] = { {} }, ["rwmutex:trylock"] = { {} },
  ["rwmutex:rlock"] = { {} }, ["rwmutex:runlock"] = { {} }, ["rwmutex:tryrlock"] = { {} },
  ["waitgroup:add"] = { { "int" } }, ["waitgroup:done"] = { {} }, ["waitgroup:wait"] = { {} },
  ["waitgroup:go"] = { { "fn" } },
  ["semaphore:acquire"] = { { "int?" }, extra = { { -1 } } },
  ["semaphore:try_acquire"] = { { "int?" }, extra = { { -1 } } },
  ["semaphore:release"] = { { "int?" }, extra = { { -1 } } },
  ["cond:wait"] = { {} }, ["cond:signal"] = { {} }, ["cond:broadcast"] = { {} },
  ["once:call"] = { { "fn" } },
  ["pool:get"] = { {} }, ["pool:put"] = { {} },
  ["context:done"] = { {} }, ["context:err"] = { {} }, ["context:deadline"] = { {} },
  ["context:value"] = { {} },
  ["group:go"] = { { "fn" } }, ["group:try_go"] = { { "fn" } }, ["group:wait"] = { {} },
  ["group:limit"] = { { "int" }, extra = { { math.maxinteger } } },
  ["memo:get"] = { { "key" } }, ["memo:forget"] = { { "key" } },
  ["listener:accept"] = { {} }, ["listener:addr"] = { {} }, ["listener:close"] = { {} },
  ["conn:read"] = { { "int?" }, extra = { { -1 } } },
  ["conn:read_line"] = { {} }, ["conn:lines"] = { {} },
  ["conn:write"] = { { "str" } }, ["conn:close_write"] = { {} }, ["conn:close"] = { {} },
  ["conn:remote_addr"] = { {} }, ["conn:local_addr"] = { {} },
  ["conn:set_deadline"] = { { "num?" } }, ["conn:set_read_deadline"] = { { "num?" } },
  ["conn:set_write_deadline"] = { { "num?" } },
  ["conn:set_max_line"] = { { "int" }, extra = { { 0 }, { -1 } } },
  ["process:wait"] = { {} }, ["process:kill"] = { {} },

  -- the race detector's API, and the core calls under it (with a bad argument: never turned on)
  ["csp.race.watch"] = { { "tbl", "str?" } }, ["csp._race_watch"] = { { "tbl", "str?" } },
  ["csp.race.acquire"] = { { "obj" } }, ["csp._race_acquire"] = { { "obj" } },
  ["csp.race.release"] = { { "obj" } }, ["csp._race_release"] = { { "obj" } },
  ["csp.race.errors"] = { {} }, ["csp._race_errors"] = { {} },
  ["csp.race.enabled"] = { {} }, ["csp._race_enabled"] = { {} },
  ["csp._race_enable"] = { { "str?" } },
  ["csp.thread"] = { { "thr" }, extra = { { function() return foreign end }, { print } } },
  ["csp.xchan"] = { { "int?" }, extra = { { -1 }, { 1 << 40 } } },
  ["csp.syncmap"] = { {} }, ["csp.nthreads"] = { {} }, ["csp.maxthreads"] = { {} },
  ["csp.atomic.int"] = { { "int?" } }, ["csp.atomic.value"] = { {} },
  ["csp.parallel"] = { { "int?", "fn", "xchan", "xchan?" }, valid = { 1, print, csp.xchan() },
    extra = { { 1, function() return foreign end, csp.xchan() } } },
  ["thread:join"] = { {} }, ["thread:id"] = { {} },
  -- sync.Map takes any comparable key and any value, nil included: only what cannot cross.
  ["syncmap:load"] = { { "val?" } }, ["syncmap:store"] = { { "val?", "val?" } },
  ["syncmap:load_or_store"] = { { "val?", "val?" } },
  ["syncmap:load_and_delete"] = { { "val?" } }, ["syncmap:delete"] = { { "val?" } },
  ["syncmap:swap"] = { { "val?", "val?" } },
  ["syncmap:compare_and_swap"] = { { "val?", "val?", "val?" } },
  ["syncmap:range"] = { { "fn" } },
  ["atomicint:load"] = { {} }, ["atomicint:store"] = { { "int" } }, ["atomicint:add"] = { { "int" } },
  ["atomicint:swap"] = { { "int" } }, ["atomicint:cas"] = { { "int", "int" } },
  ["atomicvalue:load"] = { {} }, ["atomicvalue:store"] = { { "val" } },
  ["atomicvalue:swap"] = { { "val" } }, ["atomicvalue:cas"] = { { "val?", "val" }, valid = { [2] = 1 } },
}

-- The standard streams are conns opened lazily (their own code path): the conn cases.
make.stdio = function() return csp.stdin end
-- Directional views of a channel (their own type) and a timer's channel: the channel cases.
make.sendview = function() return csp.chan(1):sender() end
make.recvview = function() return csp.chan(1):receiver() end
make.timerchan = function() return csp.timer(3600).c end
local copies = {}
for name, e in pairs(F) do
  local m = name:match("^conn:(.+)$")
  if m then copies["stdio:" .. m] = e end
  m = name:match("^chan:(.+)$")
  if m then
    for _, t in ipairs { "sendview", "recvview", "timerchan", "xchan" } do copies[t .. ":" .. m] = e end
  end
end
for name, e in pairs(copies) do F[name] = e end

-- Every function reachable from csp, and every method of the objects above.
local function enumerate()
  local found, seen = {}, {}
  local function walk(t, prefix)
    if seen[t] then return end
    seen[t] = true
    for k, v in pairs(t) do
      if type(v) == "function" then found[#found + 1] = prefix .. k
      elseif type(v) == "table" and type(k) == "string" then walk(v, prefix .. k .. ".") end
    end
  end
  walk(csp, "csp.")
  for tname, mk in pairs(make) do
    local o = mk()
    local idx = debug.getmetatable(o) -- the core's types hide it behind __metatable
    idx = type(idx) == "table" and idx.__index or nil
    if type(idx) ~= "table" then
      idx = {}
      for name in pairs(F) do
        local t, m = name:match("^(%w+):(.+)$")
        if t == tname then idx[m] = o[m] end
      end
    end
    local src = type(o) == "table" and o or idx
    for k, v in pairs(src) do
      if type(v) == "function" and not k:match("^_") then found[#found + 1] = tname .. ":" .. k end
    end
    if type(o) == "table" and idx ~= src then
      for k, v in pairs(idx) do
        if type(v) == "function" and not k:match("^_") then found[#found + 1] = tname .. ":" .. k end
      end
    end
  end
  table.sort(found)
  return found
end

-- A function calling `NAME` at a call site that names it, so that luaL's message can.
local callers = {}
local function caller(name, method)
  local key = name .. (method and ":" or ".")
  if not callers[key] then
    callers[key] = assert(load(method
      and ("local o = ... return o:%s(select(2, ...))"):format(name)
      or ("local m = ... return m.%s(select(2, ...))"):format(name), "=walker"))
  end
  return callers[key]
end

-- Runs f(...) in a goroutine, bounded: a call that blocks instead of raising fails the spec.
local function run(f, ...)
  local args = table.pack(...)
  local out = csp.chan(1)
  csp.go(function() out:send(table.pack(pcall(f, table.unpack(args, 1, args.n)))) end)
  local i, r = csp.select { csp.recv(out), csp.recv(csp.after(10)) }
  assert(i == 1, "the call blocked instead of raising")
  return r
end

local function show(v)
  if v == "<nil>" or v == nil then return "nil" end
  if type(v) == "string" then return ("%q"):format(v) end
  if v ~= v then return "nan" end
  return tostring(v)
end

local function expect_raise(fname, r, what)
  assert(not r[1], ("%s with %s: no error (returned %s)"):format(fname, what, show(r[2])))
  local msg = tostring(r[2])
  -- luaL's wording, or Go's panic text naming it ("non-positive interval for csp.ticker")
  local named = msg:find("bad argument #%d+ to '" .. fname:gsub("%p", "%%%0") .. "'")
    or msg:find("calling '" .. fname:gsub("%p", "%%%0") .. "' on bad self")
    or msg:find("%f[%w_]" .. fname:gsub("%p", "%%%0") .. "%f[^%w_]")
    -- API.md's wording for a value that cannot be copied to another thread
    or msg:find("xchan: cannot send a [%w.*]+ to another thread")
    or msg:find("syncmap: cannot use a [%w.*]+ as a key")
    -- Go's panic text for CompareAndSwap, which csp calls cas
    or fname == "cas" and msg:find("sync/atomic: compare and swap of nil value into Value", 1, true)
  assert(named, ("%s with %s: the error does not name it: %s"):format(fname, what, msg))
end

-- The calls for entry `name`: { description, function, args... } lists.
local function cases(name, e)
  local out = {}
  local tname, mname = name:match("^(%w+):(.+)$")
  local path, fname = name:match("^(.*)%.([%w_]+)$")
  local params, valid = e[1], e.valid or {}
  local function base()
    local a = {}
    for i, k in ipairs(params) do
      a[i] = valid[i]
      if a[i] == nil and not k:match("%?$") then
        a[i] = ({ fn = print, num = 0, int = 1, str = "", tbl = {}, ctx = csp.background(),
          chan = csp.chan(), key = 1 })[k]
      end
    end
    return a
  end
  local function add(what, args, n)
    for i = 1, n do if args[i] == "<nil>" then args[i] = nil end end
    out[#out + 1] = { what = what, args = args, n = n }
  end
  for i, k in ipairs(params) do
    for _, bad in ipairs(kinds[k]) do
      local a = base()
      a[i] = bad
      add(("argument %d = %s"):format(i, show(bad)), a, #params)
    end
  end
  for _, x in ipairs(e.extra or {}) do
    local a, parts = {}, {}
    for i = 1, #params do a[i] = x[i] parts[i] = show(x[i]) end
    add("(" .. table.concat(parts, ", ") .. ")", a, #params)
  end
  local f
  if tname then
    fname = mname
    f = function(self_or_bad, bad_self, args, n)
      if bad_self then
        return caller(fname, false)({ [fname] = make[tname]()[fname] }, self_or_bad,
          table.unpack(args, 1, n))
      end
      return caller(fname, true)(self_or_bad, table.unpack(args, 1, n))
    end
  else
    local m = csp
    for part in path:gmatch("[^.]+") do if part ~= "csp" then m = m[part] end end
    f = function(_, _, args, n) return caller(fname, false)(m, table.unpack(args, 1, n)) end
  end
  return out, f, fname, tname
end

-- How an object of each type ends; every method is then called on it with valid arguments.
local ends = {
  chan = function(o) o:close() end, timer = function(o) o:stop() end,
  ticker = function(o) o:stop() end, listener = function(o) o:close() end,
  conn = function(o) o:close() end, process = function(o) o:wait() end,
  group = function(o) o:wait() end, pool = function(o) o:put(1) end,
  context = function() end, -- (made cancelled below)
}

describe("every public function", function()
  it("has bad-argument cases here", function()
    local found, missing = enumerate(), {}
    assert.is_true(#found > 150, "the enumeration found only " .. #found)
    for _, name in ipairs(found) do
      if F[name] == nil then missing[#missing + 1] = name end
    end
    assert.are.same({}, missing)
  end)

  it("on a closed or ended object returns or raises Go's error, never anything else", function()
    make.context = function() return (csp.with_timeout(csp.background(), -1)) end
    local names = {}
    for name in pairs(F) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local tname, m = name:match("^(%w+):(.+)$")
      if tname and ends[tname] and type(F[name]) == "table" then
        local o = make[tname]()
        ends[tname](o)
        local args = {}
        for i, k in ipairs(F[name][1]) do
          args[i] = ({ fn = print, num = 1, int = 1, str = "x", key = 1 })[k:gsub("%?$", "")]
        end
        local r = run(function() return o[m](o, table.unpack(args, 1, #F[name][1])) end)
        if not r[1] then
          local msg = tostring(r[2])
          assert(not msg:find("attempt to"), name .. ": " .. msg)
          assert(msg:find("closed channel") or msg:find("Wait was already called"), name .. ": " .. msg)
        end
      end
    end
    make.context = function() return (csp.with_cancel(csp.background())) end
  end)

  local names = {}
  for name in pairs(F) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local e = F[name]
    if type(e) == "table" then
      it(name .. " raises, naming itself, on each bad argument", function()
        local calls, f, fname, tname = cases(name, e)
        for _, c in ipairs(calls) do
          local call = function() return f(tname and make[tname](), false, c.args, c.n) end
          local r = e.main and table.pack(pcall(call)) or run(call)
          expect_raise(fname, r, c.what)
        end
        if tname then
          -- a bad self, as `o.m(x)` for `o:m(x)` or a foreign object makes it
          local others = { nil, 1, "x", {}, true, foreign, co, print,
            (tname:match("chan$") or tname:match("view$")) and csp.mutex() or csp.chan() }
          for i = 1, 9 do
            local r = run(function() return f(others[i], true, {}, 0) end)
            expect_raise(fname, r, "self = " .. show(others[i]))
          end
        end
      end)
    end
  end
end)

describe("a function called through pcall", function()
  it("is named by its module path (the C submodules are package.loaded entries)", function()
    assert.matches("bad argument #1 to 'csp.net.dial'", select(2, pcall(csp.net.dial, 1, 2)), 1, true)
    assert.matches("bad argument #1 to 'csp.fs.stat'", select(2, pcall(csp.fs.stat, {})), 1, true)
    assert.are.equal(csp.net, require("csp.net"))
  end)
end)

-- Issue 11: every metatable is built by module.c (csp_newmeta and its kin); these are the ones
-- that used to be finished by hand in their own files.
describe("metatables built by module.c", function()
  it("a shared object's proxy keeps its type's metamethods, __gc and __metatable", function()
    for tname, name in pairs { xchan = "csp.xchan", atomicint = "csp.atomic.int",
                               atomicvalue = "csp.atomic.value", thread = "csp.thread" } do
      local o = make[tname]()
      local mt = debug.getmetatable(o)
      assert.are.equal(name, getmetatable(o), tname)
      assert.are.equal("function", type(mt.__gc), tname)
      assert.are.equal("function", type(mt.__tostring), tname)
      assert.are.equal(name, mt.__name, tname)
      assert.is_nil(tostring(o):find("^userdata"), tname) -- its own __tostring
      if tname == "thread" then o:join() end
    end
    local x = csp.xchan(3)
    x:send(1)
    assert.are.equal(1, #x) -- __len beside __gc
  end)

  it("a wg:go closer's __close runs the done on return and on error", function()
    local wg = csp.waitgroup()
    wg:go(function() end)
    wg:go(function() error("boom") end)
    local ok = pcall(function() csp.run() end)
    assert.is_false(ok) -- the panic surfaces
    wg:wait() -- both done ran: no deadlock
  end)
end)
