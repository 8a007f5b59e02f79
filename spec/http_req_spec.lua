-- HTTP requests and HTML parses as wait.c's requests (csp_Req): a transfer cancelled by a
-- context while in flight, main's http.get cut by a caught panic, a transfer still in flight
-- when the script ends, a parse on the thread pool whose wait a panic abandoned. Each case runs
-- in a child process (the server is the child's own, spec/helpers/httpd.lua); under `make asan`
-- the child checks its leaks at exit (LeakSanitizer), so a request nobody frees fails the case,
-- and a freed one touched again fails it too.
local run = require "spec.helpers.run"

local PRELUDE = ([[
package.path = %q .. "/?.lua;" .. package.path
local csp = require "csp"
local util = require "spec.helpers.util"
local httpd = require "spec.helpers.httpd"
-- /hold: announces the request on `got`, answers once `release` is closed; /ok answers at once.
local got, release = csp.chan(8), csp.chan()
local srv = httpd.start(function(req, c)
  if req.path == "/hold" then
    got:send(req.path)
    release:recv()
  end
  httpd.reply(c, 200, "ok " .. req.path)
end)
]]):format(run.root)

local function child(code, env)
  return run.checked(PRELUDE .. code, env)
end

describe("an HTTP request (csp_Req)", function()
  it("cancelled by its context while in flight lets go, and the next request works", function()
    local out = child([[
      local ctx, cancel = csp.with_cancel(csp.background())
      csp.go(function() got:recv() cancel() end)
      local r, err = csp.http.get(srv.url .. "/hold", { ctx = ctx })
      assert(r == nil and err:find("context canceled$"), err)
      release:close()
      print(assert(csp.http.get(srv.url .. "/ok")).body)
      srv.close()
    ]])
    assert.are.equal("ok /ok\n", out)
  end)

  it("of main cut by a caught panic is stopped, and wakes none of main's later waits", function()
    local out = child([[
      csp.go(function() got:recv() error("boom") end)
      local ok, err = pcall(csp.http.get, srv.url .. "/hold")
      assert(not ok and err:find("boom"), err)
      release:close()  -- the server answers a transfer nobody waits for any more
      local ch = csp.chan()
      csp.go(function() ch:send(assert(csp.http.get(srv.url .. "/ok")).body) end)
      print((ch:recv()))
      srv.close()
    ]])
    assert.are.equal("ok /ok\n", out)
  end)

  it("in flight in a goroutine when the script ends is let go", function()
    local out = child([[
      csp.go(function() csp.http.get(srv.url .. "/hold") end)
      got:recv()
      print("end")
    ]])
    assert.are.equal("end\n", out)
  end)
end)

describe("an HTML parse on the thread pool (csp_Req)", function()
  -- (A parse still on the pool when the script ends is not covered: lua_close gives the loop
  -- 1,000 turns to finish, then leaks it, with the parse, while a worker may still use it.)
  it("whose wait a caught panic abandoned is freed when it completes", function()
    local out = child([[
      local deep = ("<div>"):rep(4000) .. "<a href=x>x</a>"
      csp.go(function() error("boom") end)
      local ok, err = pcall(csp.html.links, deep, "http://h/")  -- on the pool when the panic comes
      assert(not ok and err:find("boom"), err)
      -- one pool thread, first in first out: this parse ends after the abandoned one
      print(csp.html.links(deep, "http://h/")[1])
      srv.close()
    ]], { UV_THREADPOOL_SIZE = "1" })
    assert.are.equal("http://h/x\n", out)
  end)
end)

-- Issue 12: libcurl is loaded at the first HTTP request (csrc/httpdl.c), not by require "csp".
describe("libcurl, loaded lazily", function()
  local MAPPED = [[
    local function curl_mapped()
      for l in io.lines("/proc/self/maps") do
        if l:find("libcurl", 1, true) then return true end
      end
      return false
    end
  ]]

  it("is not mapped after require, and is after the first request, which works", function()
    local out = child(MAPPED .. [[
      print(curl_mapped())
      -- the server above is the child's own (csp.net): still no curl
      print(curl_mapped())
      print(assert(csp.http.get(srv.url .. "/ok")).body, curl_mapped())
      srv.close()
    ]])
    assert.are.equal("false\nfalse\nok /ok\ttrue\n", out)
  end)

  it("loads from two csp.threads' first requests at once, and from the main state's after", function()
    -- Under LeakSanitizer like every case: tools/lsan.supp names OpenSSL 3's per-thread state
    -- (904 bytes of each ended thread that used it, which OpenSSL never frees).
    local out = child(MAPPED .. [[
      local function get(url)
        local csp = require "csp"
        local r, err = csp.http.get(url)
        return r and r.body or err
      end
      local ts = {}
      for i = 1, 2 do ts[i] = csp.thread(get, srv.url .. "/ok") end
      for i = 1, 2 do print(ts[i]:join()) end
      print(assert(csp.http.get(srv.url .. "/ok")).body, curl_mapped())
      srv.close()
    ]])
    assert.are.equal("ok /ok\nok /ok\nok /ok\ttrue\n", out)
  end)

  it("that cannot be loaded fails each request with a Lua error naming it", function()
    -- CSP_LIBCURL names the library to load instead of the soname libcurl.so.4
    local out = child([[
      for _ = 1, 2 do
        local ok, err = pcall(csp.http.get, srv.url .. "/ok")
        print(ok, err:match("http: cannot load libcurl: /nonexistent/libcurl.so.4: ") ~= nil)
      end
      srv.close()
    ]], { CSP_LIBCURL = "/nonexistent/libcurl.so.4" })
    assert.are.equal("false\ttrue\nfalse\ttrue\n", out)
  end)

  it("that is not libcurl fails each request with a Lua error naming it and what it lacks", function()
    local out = child([[
      local ok, err = pcall(csp.http.get, srv.url .. "/ok")
      print(ok, err:match("http: libz.so.1 has no curl_global_init$") ~= nil)
      srv.close()
    ]], { CSP_LIBCURL = "libz.so.1" })
    assert.are.equal("false\ttrue\n", out)
  end)
end)
