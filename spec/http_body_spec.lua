-- csp.http.request{stream = true}: the response returns at its headers and the body is read
-- from resp.body_reader, a csp.conn (read, read_line, lines, close, deadlines), with
-- backpressure: memory stays bounded for any size. Against spec/helpers/httpd.lua on 127.0.0.1.
local csp = require "csp"
local httpd = require "spec.helpers.httpd"
local util = require "spec.helpers.util"
local proc = require "spec.helpers.run"

-- Under `make asan` freed memory sits in ASan's quarantine: RSS says nothing there.
local ASAN = util.ASAN
local MB = 1024 * 1024

describe("csp.http body readers", function()
  local srv
  local start = httpd.each_test(after_each)

  it("returns at the headers; the body arrives through the reader", function()
    local more = csp.chan()
    srv = start(function(req, c)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: 1\r\n\r\nhello")
      more:recv()   -- the rest only once the client has the response
      c:write(" world")
    end)
    local r = assert(csp.http.request { url = srv.url .. "/x", stream = true, timeout = 5 })
    assert.same({ 200, "1", "11" }, { r.status, r.headers["x-a"], r.headers["Content-Length"] })
    assert.is_nil(r.body)
    local rd = r.body_reader
    assert.matches("^csp%.conn %(body of http://127%.0%.0%.1:%d+/x%)$", tostring(rd))
    assert.equal("hello", rd:read())
    more:send(true)
    assert.equal(" world", rd:read(100))
    assert.same({ nil, "EOF", "EOF" }, { rd:read() })
    assert.is_true(rd:close())
    local s, err, code = rd:read()
    assert.same({ nil, "EBADF" }, { s, code })
    assert.matches("file already closed", err)
  end)

  it("reads lines, and refuses writes", function()
    srv = start(function(req, c)
      httpd.chunked(c, 200, { "one\r\ntw", "o\nthree" })
    end)
    local r = assert(csp.http.get(srv.url, { stream = true, timeout = 5 }))
    local rd = r.body_reader
    assert.equal("one", rd:read_line())
    local got = {}
    for l in rd:lines() do got[#got + 1] = l end
    assert.same({ "two", "three" }, got)
    local ok, err, code = rd:write("x")
    assert.same({ nil, "EBADF" }, { ok, code })
    assert.matches("bad file descriptor", err)
    rd:close()
  end)

  it("streams a big body in bounded memory: the transfer waits for the reader", function()
    local size = (ASAN and 16 or 64) * MB
    local piece = string.rep("b", MB)
    srv = start(function(req, c)
      c:write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"):format(size))
      for _ = 1, size // MB do if not c:write(piece) then break end end
    end)
    -- lua5.4 starts in generational mode, whose collector (5.4.4) can skip collecting for a long
    -- while after a big object died (an earlier spec's): the strings read would pile up. The
    -- transfer's own memory is what this measures.
    local mode = collectgarbage("incremental")
    local _ <close> = csp.defer(collectgarbage, mode)
    collectgarbage()
    local before = util.rss_kb()
    local r = assert(csp.http.get(srv.url .. "/big", { stream = true, timeout = 60 }))
    -- nobody reads for a while: without backpressure the whole body would pour in meanwhile
    csp.sleep(0.2)
    local idle = util.rss_kb() - before
    local total, peak, heap, n = 0, 0, 0, 0
    while true do
      local s = r.body_reader:read(64 * 1024)
      if not s then break end
      total, n = total + #s, n + 1
      if n % 64 == 0 then
        peak = math.max(peak, util.rss_kb() - before)
        heap = math.max(heap, collectgarbage("count"))
      end
    end
    r.body_reader:close()
    assert.equal(size, total)
    if not ASAN then
      assert.is_true(idle < 8 * 1024, ("RSS grew %d KB while nobody read"):format(idle))
      assert.is_true(peak < 24 * 1024, ("RSS grew %d KB reading %d MB"):format(peak, size // MB))
    end
    assert.is_true(heap < 48 * 1024, ("Lua heap reached %d KB"):format(math.floor(heap)))
  end)

  it("closing the reader early stops the transfer and lets the connection go", function()
    local failed = csp.chan(1)
    srv = start(function(req, c)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
      local piece = string.rep("e", 64 * 1024)
      while c:write(piece) do end
      failed:send(true)   -- the client went away
      return "close"
    end)
    local r = assert(csp.http.get(srv.url .. "/endless", { stream = true, timeout = 30 }))
    assert.equal(1000, #assert(r.body_reader:read(1000)))
    assert.equal(1, csp.http.idle_count())
    r.body_reader:close()
    assert.equal(0, csp.http.idle_count())   -- an unfinished body condemns its connection
    assert.is_true(failed:recv())
    -- and the pool works on
    srv:close()
    srv = start(function(req, c) httpd.reply(c, 200, "next") end)
    assert.equal("next", assert(csp.http.get(srv.url, { timeout = 5 })).body)
  end)

  it("an unreferenced reader is collected and its transfer stopped", function()
    local failed = csp.chan(1)
    srv = start(function(req, c)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
      local piece = string.rep("g", 64 * 1024)
      while c:write(piece) do end
      failed:send(true)
      return "close"
    end)
    do
      local r = assert(csp.http.get(srv.url, { stream = true, timeout = 30 }))
      assert(r.body_reader:read(10))
    end
    collectgarbage()
    collectgarbage()
    assert.is_true(failed:recv())
    assert.equal(0, csp.http.idle_count())
  end)

  it("a body cut short fails the read after the bytes that came", function()
    srv = start(function(req, c)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" .. string.rep("t", 100))
      return "close"
    end)
    local r = assert(csp.http.get(srv.url .. "/cut", { stream = true, timeout = 5 }))
    local got = {}
    local s, err, code = r.body_reader:read()
    while s do
      got[#got + 1] = s
      s, err, code = r.body_reader:read()
    end
    assert.equal(100, #table.concat(got))
    assert.same({ "unexpected EOF", "EOF" }, { err, code })
    r.body_reader:close()
  end)

  it("a context's cancel stops a reader waiting for the body", function()
    srv = start(function(req, c, s)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
      s.closing:recv()
      return "close"
    end)
    local ctx, cancel = csp.with_cancel(csp.background())
    local r = assert(csp.http.get(srv.url .. "/slow", { stream = true, ctx = ctx }))
    assert.equal("some", r.body_reader:read())
    local go = csp.chan()
    csp.go(function()
      go:recv()
      cancel()
    end)
    go:send(true)
    local s, err, code = r.body_reader:read()   -- parked until the cancel
    assert.same({ nil, "context canceled", "ECANCELED" }, { s, err, code })
    r.body_reader:close()
  end)

  it("a timeout covers the body read through the reader", function()
    srv = start(function(req, c, s)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
      s.closing:recv()
      return "close"
    end)
    local r = assert(csp.http.get(srv.url .. "/stall", { stream = true, timeout = 0.2 }))
    assert.equal("some", r.body_reader:read())
    local s, err, code = r.body_reader:read()
    assert.is_nil(s)
    assert.matches("^context deadline exceeded %(Client%.Timeout or context cancellation while reading body%)$", err)
    assert.equal("ETIMEDOUT", code)
  end)

  it("a read deadline on the reader times the read out, the transfer going on", function()
    local more = csp.chan()
    srv = start(function(req, c)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
      more:recv()
      c:write("cdef")
    end)
    local r = assert(csp.http.get(srv.url, { stream = true, timeout = 10 }))
    local rd = r.body_reader
    assert.equal("ab", rd:read())
    rd:set_read_deadline(csp.now() + 0.05)
    assert.same({ nil, "i/o timeout", "ETIMEDOUT" }, { rd:read() })
    rd:set_read_deadline(nil)
    more:send(true)
    assert.equal("cdef", rd:read())
    rd:close()
  end)

  it("a failure before the headers is the request's error", function()
    local r, err, code = csp.http.get("http://127.0.0.1:1/", { stream = true, timeout = 5 })
    assert.is_nil(r)
    assert.matches("^Get \"http://127%.0%.0%.1:1/\": dial tcp 127%.0%.0%.1:1: connect: connection refused$", err)
    assert.equal("ECONNREFUSED", code)
  end)

  it("follows redirects and returns at the final response's headers", function()
    srv = start(function(req, c)
      if req.path == "/from" then return httpd.redirect(c, 302, "/to") end
      httpd.reply(c, 200, "arrived")
    end)
    local r = assert(csp.http.get(srv.url .. "/from", { stream = true, timeout = 5 }))
    assert.same({ 200, srv.url .. "/to" }, { r.status, r.url })
    assert.equal("arrived", r.body_reader:read())
    r.body_reader:close()
  end)

  it("a reader waiting keeps the program alive; a reader nobody reads hides no deadlock", function()
    local more = csp.chan()
    srv = start(function(req, c)
      c:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\na")
      more:recv()
      c:write("b")
    end)
    local r = assert(csp.http.get(srv.url, { stream = true, timeout = 10 }))
    assert.equal("a", r.body_reader:read())
    local done = csp.chan(1)
    csp.go(function()
      done:send(r.body_reader:read())
    end)
    more:send(true)
    assert.equal("b", done:recv())
    r.body_reader:close()
    local child = proc.run([[
      local csp = require "csp"
      local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
      csp.go(function()
        local c = ln:accept()
        c:read_line()
        c:write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nx")
        csp.chan():recv()
      end)
      local r = assert(csp.http.get("http://" .. ln:addr() .. "/", { stream = true, timeout = 10 }))
      io.write(r.body_reader:read(), "\n")
      csp.chan():recv()
    ]])
    assert.equal("x\n", child.stdout)
    assert.matches("all goroutines are asleep %- deadlock", child.stderr)
  end)

  it("raises on a sink with a body reader", function()
    assert.matches("bad argument #1 to 'request' %(field 'stream'",
      util.raises(csp.http.request, { url = "http://x/", stream = true, sink = print }))
  end)
end)
