-- csp.http's easy handles, kept between requests (csrc/httpopt.c): a plain GET reuses a handle its
-- last plain GET left set, and no option of one request (headers, method, body, limits,
-- redirects) shows in the next; the proxy variables are read once, at the first request.
local csp = require "csp"
local httpd = require "spec.helpers.httpd"
local run = require "spec.helpers.run"

describe("csp.http's reused easy handles", function()
  local srv
  local start = httpd.each_test(after_each)

  it("carry no option of one request into the next", function()
    local seen = {}
    srv = start(function(req, c)
      seen[#seen + 1] = req
      if req.path == "/moved" then return httpd.redirect(c, 302, "/there") end
      httpd.reply(c, 200, req.method == "HEAD" and "" or "ok " .. req.path .. " " .. req.body)
    end)
    local get, url = csp.http.get, srv.url
    local function last() return seen[#seen] end
    for _ = 1, 3 do assert.equal("ok /a ", assert(get(url .. "/a")).body) end
    assert(csp.http.request { url = url .. "/h", headers = { ["X-A"] = "1" } })
    assert.equal("1", last().headers["x-a"])
    assert(get(url .. "/b"))
    assert.same({ "GET", nil }, { last().method, last().headers["x-a"] })
    assert.equal("", assert(csp.http.request { method = "HEAD", url = url .. "/c" }).body)
    assert.equal("ok /d ", assert(get(url .. "/d")).body)
    assert.equal("GET", last().method)
    assert.equal("ok /p xyz", assert(csp.http.post(url .. "/p", "text/plain", "xyz")).body)
    assert.equal("ok /e ", assert(get(url .. "/e")).body)
    assert.equal("GET", last().method)
    local r, err, code = get(url .. "/f", { max_body = 2 })
    assert.same({ nil, "EMSGSIZE" }, { r, code }, err)
    assert.equal("ok /g ", assert(get(url .. "/g")).body)
    assert.equal(302, assert(get(url .. "/moved", { follow = false })).status)
    assert.equal("ok /there ", assert(get(url .. "/moved")).body)
    assert.equal(302, assert(get(url .. "/moved", { follow = false })).status)
    assert.equal(2, srv.accepted)  -- kept alive, but for the body over max_body, cut
  end)

  it("fetch one URL again and again as curl first read it, others and redirects between", function()
    srv = start(function(req, c)
      if req.path == "/moved" then return httpd.redirect(c, 302, "/there") end
      httpd.reply(c, 200, "ok " .. req.path)
    end)
    local base = srv.url
    local seq = { "/a", "/a", "/a", "/b", "/a", "/a", "/moved", "/moved", "/moved", "/a", "", "", "", "/a#x", "/a#x" }
    for i, p in ipairs(seq) do
      local r = assert(csp.http.get(base .. p))
      local want = p == "/moved" and "/there" or p == "" and "/" or p:gsub("#.*", "")
      assert.equal("ok " .. want, r.body, "request " .. i)
      -- the final URL: the request's own spelling (no "/" added), or a redirect's
      assert.equal(base .. (p == "/moved" and "/there" or p), r.url, "request " .. i)
    end
  end)

  it("send each URL of one origin as curl's own parse of it would, whatever came before", function()
    -- A plain GET after one to the same origin sets only the new path and query (url_update in
    -- csrc/httpopt.c) when curl's parse would keep them as they are; the oracle is a request
    -- with a header line, whose handle is reset and given the URL string for curl to parse.
    srv = start(function(req, c) httpd.reply(c, 200, req.target .. " " .. req.headers.host) end)
    local tails = { "/start", "/a", "/a?x=1", "/a?x=1", "/b", "/a?", "/", "/?q", "/a/./b", "/a/../b",
      "/a/.", "/a/..", "/.well-known/x", "/a%2Fb", "/a%2fb", "/a?%2F", "/a?b?c", "/a?b/../c", "/a#f",
      "/a?b#f", "/a\\b", "/a b", "/\xc3\xa4", "/a;b=c/~u/*!$&'()+,:@", "/a?x=1", "", "?x", "/z" }
    local function see(r, err) return r and { r.status, r.body, r.url } or { err } end
    local function run_all(list)
      local got = {}
      for i, t in ipairs(list) do got[i] = see(csp.http.get(srv.url .. t)) end
      return got
    end
    local want = {}
    for i, t in ipairs(tails) do
      want[i] = see(csp.http.request { url = srv.url .. t, headers = { ["X-Oracle"] = "1" } })
    end
    local host = srv.url:match("//(.*)")
    assert.same({ 200, "/a?x=1 " .. host, srv.url .. "/a?x=1" }, want[3])  -- the oracle itself
    assert.same(want, run_all(tails))
    local rev, rwant = {}, {}
    for i = #tails, 1, -1 do rev[#rev + 1], rwant[#rwant + 1] = tails[i], want[i] end
    assert.same(rwant, run_all(rev))
    -- another origin between (a host's other spelling), and one curl spells otherwise
    local other, upper = srv.url:gsub("127%.0%.0%.1", "localhost"), srv.url:gsub("^http", "HTTP")
    for _, u in ipairs { srv.url .. "/a?1", other .. "/b?2", other .. "/c", srv.url .. "/d",
      upper .. "/e", upper .. "/f?3", srv.url .. "/g" } do
      local r = assert(csp.http.get(u))
      local h, path = u:match("^%a+://([^/]+)(.*)$")
      assert.same({ path .. " " .. h, (u:gsub("^HTTP", "http")) }, { r.body, r.url })
    end
  end)

  it("follow the proxy variables as they were at the first request", function()
    local code = ([[
      package.path = %q .. "/?.lua;" .. package.path
      local csp = require "csp"
      local httpd = require "spec.helpers.httpd"
      local srv = httpd.start(function(req, c) httpd.reply(c, 200, "direct") end)
      local r, err = csp.http.get(srv.url .. "/")
      print(r and r.body or err)
      srv.close()
    ]]):format(run.root)
    -- port 1 on 127.0.0.1 refuses: a request sent to that proxy fails, the server is up
    local out = run.checked(code, { http_proxy = "http://127.0.0.1:1" })
    assert.matches("connection refused", out)
    out = run.checked(code, { http_proxy = "http://127.0.0.1:1", no_proxy = "127.0.0.1" })
    assert.equal("direct\n", out)
    out = run.checked(code, { all_proxy = "http://127.0.0.1:1" })
    assert.matches("connection refused", out)
    out = run.checked(code, { http_proxy = "", all_proxy = "" })  -- empty: none, as for curl
    assert.equal("direct\n", out)
  end)
end)
