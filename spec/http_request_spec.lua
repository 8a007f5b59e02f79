-- csp.http.request and post (API.md "HTTP (libcurl)"): methods, bodies (string and streamed),
-- the sink, contexts, limits, decoding, keep-alive framing, and the loop's liveness, against
-- spec/helpers/httpd.lua on 127.0.0.1.
local csp = require "csp"
local httpd = require "spec.helpers.httpd"
local proc = require "spec.helpers.run"
local util = require "spec.helpers.util"

-- Under `make asan` freed memory sits in ASan's quarantine: RSS says nothing there, and the
-- big transfers are kept small so the rest of the suite keeps its memory.
local ASAN = util.ASAN

describe("csp.http.request", function()
  local srv
  local start = httpd.each_test(after_each)

  it("sends any method with a string body and returns status, headers, body, url, proto", function()
    local seen = {}
    srv = start(function(req, c)
      seen[#seen + 1] = req
      httpd.reply(c, 201, req.method == "HEAD" and "" or "got " .. #req.body,
        { { "Set-Cookie", "a=1" }, { "Set-Cookie", "b=2" } })
    end)
    local r = assert(csp.http.request { method = "PUT", url = srv.url .. "/x", body = "hello",
      headers = { ["Content-Type"] = "text/plain" }, timeout = 5 })
    assert.same({ 201, "got 5", "HTTP/1.1", srv.url .. "/x" }, { r.status, r.body, r.proto, r.url })
    assert.equal("a=1, b=2", r.headers["set-cookie"])
    assert.same({ "PUT", "hello", "text/plain" },
      { seen[1].method, seen[1].body, seen[1].headers["content-type"] })
    r = assert(csp.http.request { method = "delete", url = srv.url .. "/y", timeout = 5 })
    assert.same({ "DELETE", 201 }, { seen[2].method, r.status })
    r = assert(csp.http.request { method = "HEAD", url = srv.url .. "/z", timeout = 5 })
    assert.same({ 201, "" }, { r.status, r.body })
    assert.equal("HEAD", seen[3].method)
  end)

  it("post sends the content type and body; an empty body is still a POST", function()
    local seen = {}
    srv = start(function(req, c)
      seen[#seen + 1] = req
      httpd.reply(c, 200, "ok")
    end)
    assert(csp.http.post(srv.url .. "/form", "application/x-www-form-urlencoded", "a=1&b=2", { timeout = 5 }))
    assert(csp.http.post(srv.url .. "/empty", "text/plain", "", { timeout = 5 }))
    assert.same({ "POST", "a=1&b=2", "application/x-www-form-urlencoded" },
      { seen[1].method, seen[1].body, seen[1].headers["content-type"] })
    assert.same({ "POST", "", "0" }, { seen[2].method, seen[2].body, seen[2].headers["content-length"] })
    assert.is_nil(seen[1].headers.expect)   -- Go sends no Expect: 100-continue
  end)

  it("sends no Content-Type of its own with a body, as Go; the caller's is sent as given", function()
    local seen = {}
    srv = start(function(req, c)
      seen[#seen + 1] = req.method .. " " .. tostring(req.headers["content-type"]) .. " " .. req.body
      httpd.reply(c, 200, "ok")
    end)
    local function fn(parts)
      local i = 0
      return function() i = i + 1 return parts[i] end
    end
    local u = srv.url .. "/x"
    local R = csp.http.request
    assert(R { method = "PUT", url = u, body = "a" })
    assert(R { method = "POST", url = u, body = "b" })
    assert(R { method = "DELETE", url = u, body = "" })
    assert(R { method = "POST", url = u })
    assert(R { method = "GET", url = u, body = "c" })
    assert(R { method = "PUT", url = u, body = fn { "d", "e" } })
    assert(R { method = "POST", url = u, body = "f", headers = { ["X-A"] = "1" } })
    assert(R { method = "POST", url = u, body = "g", headers = { ["content-TYPE"] = "text/x" } })
    assert(R { method = "PATCH", url = u, body = fn { "h" }, headers = { ["Content-Type"] = "a/b" } })
    assert(csp.http.post(u, "text/plain", "i"))
    assert(csp.http.post(u, "text/plain", fn { "j" }))
    assert.same({ "PUT nil a", "POST nil b", "DELETE nil ", "POST nil ", "GET nil c", "PUT nil de",
      "POST nil f", "POST text/x g", "PATCH a/b h", "POST text/plain i", "POST text/plain j" }, seen)
  end)

  it("streams a body from a function and from a reader, chunked", function()
    local bodies = {}
    srv = start(function(req, c)
      bodies[#bodies + 1] = { req.body, req.headers["transfer-encoding"] }
      httpd.reply(c, 200, "ok")
    end)
    local parts, i = { "one ", "two ", string.rep("3", 100000) }, 0
    assert(csp.http.request { method = "POST", url = srv.url, timeout = 5, body = function()
      i = i + 1
      csp.gosched()   -- a producer may block
      return parts[i]
    end })
    assert.same({ table.concat(parts), "chunked" }, bodies[1])
    local src = { data = string.rep("r", 200000), pos = 1 }
    function src:read(n)
      if self.pos > #self.data then return nil end
      local s = self.data:sub(self.pos, self.pos + n - 1)
      self.pos = self.pos + #s
      return s
    end
    assert(csp.http.post(srv.url, "text/plain", src, { timeout = 5 }))
    assert.equal(src.data, bodies[2][1])
  end)

  it("delivers a big body to the sink in pieces with flat memory", function()
    local piece = string.rep("s", 1024 * 1024)
    local MB = ASAN and 32 or 300
    srv = start(function(req, c)
      c:write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"):format(MB * #piece))
      for _ = 1, MB do if not c:write(piece) then break end end
    end)
    collectgarbage()
    local before, peak, total, n = util.rss_kb(), 0, 0, 0
    local r = assert(csp.http.get(srv.url .. "/big", { timeout = 60, sink = function(chunk)
      total, n = total + #chunk, n + 1
      if n % 64 == 0 then peak = math.max(peak, util.rss_kb()) end
    end }))
    assert.equal(200, r.status)
    assert.is_nil(r.body)
    assert.equal(MB * #piece, total)
    assert.is_true(n > MB, "pieces: " .. n)
    if not ASAN then
      assert.is_true(peak - before < 64 * 1024, ("RSS grew %d KB for a %d MB body"):format(peak - before, MB))
    end
  end)

  it("limits a body to 64 MiB by default; max_body = false lifts it", function()
    local size = 64 * 1024 * 1024 + 1
    srv = start(function(req, c)
      local endless = req.path == "/endless"
      c:write("HTTP/1.1 200 OK\r\n" .. (endless and "" or "Content-Length: " .. size .. "\r\n") .. "\r\n")
      local piece, left = string.rep("m", 1024 * 1024), size
      while endless or left > 0 do
        local s = (not endless and left < #piece) and piece:sub(1, left) or piece
        if not c:write(s) then break end
        left = left - #s
      end
      return "close"
    end)
    local r, err, code = csp.http.get(srv.url .. "/endless", { timeout = 30 })
    assert.is_nil(r)
    assert.matches("response body too large %(limit 67108864 bytes%)", err)
    assert.equal("EMSGSIZE", code)
    r, err = csp.http.get(srv.url .. "/announced", { timeout = 30 })
    assert.is_nil(r)
    assert.matches("response body too large", err)
    assert.equal(size, #assert(csp.http.get(srv.url .. "/announced", { timeout = 30, max_body = false })).body)
    collectgarbage()
  end)

  it("a context's cancel or deadline stops a request", function()
    local arrived = csp.chan(1)
    srv = start(function(req, c, s)
      arrived:send(true)
      s.closing:recv()
      return "close"
    end)
    local ctx, cancel = csp.with_cancel(csp.background())
    csp.go(function()
      arrived:recv()
      cancel()
    end)
    local r, err = csp.http.get(srv.url .. "/slow", { ctx = ctx })
    assert.is_nil(r)
    assert.equal(('Get "%s/slow": context canceled'):format(srv.url), err)
    local tctx, tcancel = csp.with_timeout(csp.background(), 0.1)
    r, err = csp.http.get(srv.url .. "/slow", { ctx = tctx })
    tcancel()
    arrived:recv()
    assert.is_nil(r)
    assert.matches("context deadline exceeded$", err)
    -- already cancelled: no request at all
    r, err = csp.http.get(srv.url .. "/never", { ctx = ctx })
    assert.is_nil(r)
    assert.equal(('Get "%s/never": context canceled'):format(srv.url), err)
  end)

  it("decodes gzip when it asked for it, and leaves it alone when the caller did", function()
    local gz = assert(io.popen("printf 'hello, gzip' | gzip -c")):read("a")
    local ae
    srv = start(function(req, c)
      ae = req.headers["accept-encoding"]
      httpd.reply(c, 200, gz, { { "Content-Encoding", "gzip" } })
    end)
    local r = assert(csp.http.get(srv.url, { timeout = 5 }))
    assert.equal("hello, gzip", r.body)
    assert.equal("gzip, deflate", ae)
    r = assert(csp.http.get(srv.url, { timeout = 5, headers = { ["Accept-Encoding"] = "gzip" } }))
    assert.equal(gz, r.body)
  end)

  it("decodes deflate, sends no Accept of its own (as Go), and one User-Agent: csp's or the caller's", function()
    local zl = assert(io.popen([[python3 -c 'import sys, zlib
sys.stdout.buffer.write(zlib.compress(b"hello, deflate"))']])):read("a")
    local seen = {}
    srv = start(function(req, c)
      local h = req.headers
      local _, agents = req.raw:lower():gsub("\nuser%-agent:", "")
      seen[#seen + 1] = table.concat({ h["accept"] or "-", h["user-agent"], agents, h["expect"] or "-" }, " ")
      httpd.reply(c, 200, zl, { { "Content-Encoding", "deflate" } })
    end)
    local function get(headers)
      return assert(csp.http.get(srv.url, { timeout = 5, headers = headers })).body
    end
    assert.equal("hello, deflate", get())
    assert.equal("hello, deflate", get({ Accept = "text/html", ["X-A"] = "1" }))
    assert.equal("hello, deflate", get({ ["user-agent"] = "me" }))
    local r = assert(csp.http.post(srv.url, "text/plain", ("x"):rep(2 << 20), { timeout = 5 }))
    assert.equal("hello, deflate", r.body)
    assert.same({ "- csp 1 -", "text/html csp 1 -", "- me 1 -", "- csp 1 -" }, seen)
  end)

  describe("keep-alive framing (issue 9.4)", function()
    -- The server appends a whole forged response after the first one; the next request on
    -- that connection must not read it as its answer.
    local FORGED = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"

    it("bytes after Content-Length in the same segment", function()
      srv = start(function(req, c)
        if req.path == "/first" then
          c:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" .. FORGED)
        else
          httpd.reply(c, 200, "real")
        end
      end)
      assert.equal("ok", assert(csp.http.get(srv.url .. "/first", { timeout = 5 })).body)
      assert.equal("real", assert(csp.http.get(srv.url .. "/ok", { timeout = 5 })).body)
    end)

    it("bytes after Content-Length arriving once the response was read", function()
      local go_on, sent = csp.chan(), csp.chan()
      srv = start(function(req, c)
        if req.path == "/first" then
          httpd.reply(c, 200, "ok")
          go_on:recv()
          c:write(FORGED)
          sent:send(true)
        else
          httpd.reply(c, 200, "real")
        end
      end)
      assert.equal("ok", assert(csp.http.get(srv.url .. "/first", { timeout = 5 })).body)
      go_on:send(true)
      sent:recv()
      csp.sleep(0.05)  -- let the forged bytes reach the client's socket: the case under test
      assert.equal("real", assert(csp.http.get(srv.url .. "/ok", { timeout = 5 })).body)
    end)
  end)

  it("raises on bad arguments, naming the option", function()
    assert.matches("bad argument #1 to 'request'", util.raises(csp.http.request, "http://x/"))
    assert.matches("url", util.raises(csp.http.request, {}))
    assert.matches("method", util.raises(csp.http.request, { url = "http://x/", method = "A B" }))
    assert.matches("body", util.raises(csp.http.request, { url = "http://x/", body = 42 }))
    assert.matches("sink", util.raises(csp.http.request, { url = "http://x/", sink = 1 }))
    assert.matches("http_version", util.raises(csp.http.request, { url = "http://x/", http_version = "3" }))
    assert.matches("ctx", util.raises(csp.http.request, { url = "http://x/", ctx = 1 }))
    assert.matches("follow", util.raises(csp.http.request, { url = "http://x/", follow = -1 }))
    assert.matches("bad argument #2 to 'post'", util.raises(csp.http.post, "http://x/", nil, ""))
  end)

  it("follow = 0 returns the redirect itself", function()
    srv = start(function(req, c) httpd.redirect(c, 302, "/elsewhere") end)
    local r = assert(csp.http.request { url = srv.url .. "/", follow = 0, timeout = 5 })
    assert.same({ 302, "/elsewhere" }, { r.status, r.headers.location })
  end)
end)

describe("csp.http and the scheduler", function()
  -- The child fetches from a server in this process (which keeps serving while the child runs
  -- in the background), so its only goroutine-visible state is an idle pooled connection.
  local function child(code)
    local srv = httpd.start(function(req, c) httpd.reply(c, 200, "ok") end)
    local script, out, err, st = os.tmpname(), os.tmpname(), os.tmpname(), os.tmpname()
    os.remove(st)
    local f = assert(io.open(script, "w"))
    f:write((code:gsub("@URL@", srv.url)))
    f:close()
    os.execute(("(%s timeout -k 1 20 lua5.4 %s >%s 2>%s; echo $? >%s) &"):format(proc.env,
      proc.quote(script), proc.quote(out), proc.quote(err), proc.quote(st)))
    local slurp = proc.slurp
    while slurp(st) == "" do csp.sleep(0.02) end
    local r = { code = tonumber(slurp(st):match("%d+")), stdout = slurp(out), stderr = slurp(err) }
    for _, p in ipairs { script, out, err, st } do os.remove(p) end
    srv:close()
    return r
  end

  it("pooled idle connections neither keep the program alive nor hide a deadlock", function()
    local code = [[
      local csp = require "csp"
      local r = assert(csp.http.get("@URL@/", { timeout = 5 }))
      io.write(r.body, " ", csp.http.idle_count(), "\n")
      @TAIL@
    ]]
    local r = child((code:gsub("@TAIL@", "csp.chan():recv()")))
    assert.equal("ok 1\n", r.stdout)
    assert.matches("all goroutines are asleep %- deadlock", r.stderr)
    assert.equal(1, r.code)
    r = child((code:gsub("@TAIL@", "")))
    assert.same({ 0, "ok 1\n" }, { r.code, r.stdout })
  end)

  it("other goroutines run while requests are in flight, and many run at once", function()
    local gate = csp.chan()
    local srv = httpd.start(function(req, c)
      gate:recv()
      httpd.reply(c, 200, req.path)
    end)
    local wg, got = csp.waitgroup(), {}
    for i = 1, 20 do
      wg:go(function() got[i] = assert(csp.http.get(srv.url .. "/" .. i, { timeout = 10 })).body end)
    end
    for _ = 1, 20 do gate:send(true) end   -- the handlers only go on once we ran
    wg:wait()
    for i = 1, 20 do assert.equal("/" .. i, got[i]) end
    srv:close()
    csp.http.close_idle()
  end)
end)
