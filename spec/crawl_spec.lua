-- The crawler examples (seed 1.7), memo over HTTP (2.6) and mirroredQuery over HTTP (1.5.2),
-- run as real processes against real servers on 127.0.0.1: a generated site served by nginx
-- (python3 -m http.server without nginx) for the crawlers, and in-process csp servers with
-- chosen delays for memo_http and mirrored_http.
local csp = require "csp"
local site = require "spec.helpers.site"

local proc = require "spec.helpers.run"
local quote, root, ENV = proc.quote, proc.root, proc.env

local slurp = proc.slurp

-- Runs examples/<name> with args (a list) in the background, `limit` seconds at most, after
-- the shell prefix `pre` (e.g. a ulimit); this process keeps running its goroutines (in-process
-- servers) meanwhile. Returns stdout, stderr, exit status (124 when killed by the timeout).
local function run(name, args, limit, pre)
  local q = {}
  for i, a in ipairs(args) do q[i] = quote(a) end
  local out, err, st = os.tmpname(), os.tmpname(), os.tmpname()
  os.remove(st)
  os.execute(("cd %s && (%s %s timeout -k 1 %s lua5.4 examples/%s %s </dev/null >%s 2>%s; echo $? >%s) &")
    :format(quote(root), pre or "", ENV, limit or 15, name, table.concat(q, " "),
      quote(out), quote(err), quote(st)))
  while slurp(st) == "" do csp.sleep(0.01) end
  local status = tonumber(slurp(st):match("%d+"))
  local o, e = slurp(out), slurp(err)
  os.remove(out)
  os.remove(err)
  os.remove(st)
  return o, e, status
end

-- The printed URLs as a set; fails on a URL printed twice.
local function printed(out)
  local set, n = {}, 0
  for line in out:gmatch("[^\n]+") do
    assert(not set[line], "printed twice: " .. line)
    set[line], n = true, n + 1
  end
  return set, n
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- Compares two URL sets with a readable difference.
local function same_set(want, got)
  local missing, extra = {}, {}
  for u in pairs(want) do if not got[u] then missing[#missing + 1] = u end end
  for u in pairs(got) do if not want[u] then extra[#extra + 1] = u end end
  table.sort(missing)
  table.sort(extra)
  assert(#missing == 0 and #extra == 0, ("%d URLs wanted, %d got; missing: %s; extra: %s")
    :format(count(want), count(got), table.concat(missing, " ", 1, math.min(#missing, 10)),
      table.concat(extra, " ", 1, math.min(#extra, 10))))
end

-- crawl1 never ends normally: what it printed is reachable (at least 90% of the site), and the
-- runtime reports the deadlock (unless the time limit came first).
local function crawled_then_deadlocked(s, out, err, status)
  local want = site.reachable(s, { s.start_url }, { host = s.host })
  local got, n = printed(out)
  for u in pairs(got) do assert.is_true(want[u], u) end
  assert.is_true(n >= 0.9 * count(want), n .. " of " .. count(want))
  assert.is_true(status ~= 0, "crawl1 ended normally")
  if status ~= 124 then
    assert.matches("all goroutines are asleep %- deadlock!", err)
  end
end

describe("crawlers on a generated site", function()
  local s
  setup(function() s = site.start(300, 20261129) end)
  teardown(function() if s then s.stop() end end)

  it("the site's model is sane: redirects, 404s, non-HTML, other hosts, unreachable pages", function()
    local all = site.reachable(s, { s.start_url })
    local on_host = site.reachable(s, { s.start_url }, { host = s.host })
    local n_all, n_host = count(all), count(on_host)
    assert.is_true(n_host > 150 and n_host < n_all, n_host .. " of " .. n_all)
    local kinds = {}
    for u in pairs(all) do
      local p = u:find("^https://") and "https" or u:find("^http://127%.0%.0%.1:1/") and "other host"
        or u:match("^http://127%.0%.0%.1:%d+(/%a+/)")
      if not s.links[u] then p = "leaf " .. p end
      kinds[p] = true
    end
    for _, k in ipairs { "/p/", "/q/", "/d/", "leaf /f/", "leaf /missing/",
      "leaf other host", "leaf https" } do
      assert.is_true(kinds[k], k)
    end
    local hidden = 0
    for i = math.floor(s.n * 0.9) + 1, s.n do
      if all[s.base .. site.path(i)] then hidden = hidden + 1 end
    end
    assert.equal(0, hidden)
    -- The server agrees with the model on the kinds of answers.
    local r = assert(csp.http.get(s.base .. "/d/5"))
    assert.same({ 200, s.base .. "/d/5/" }, { r.status, r.url })
    assert.equal(404, assert(csp.http.get(s.base .. "/missing/1.html")).status)
    assert.matches("^text/plain", assert(csp.http.get(s.base .. "/f/1.txt")).headers["content-type"])
    assert.matches("^image/png", assert(csp.http.get(s.base .. "/f/1.png")).headers["content-type"])
  end)

  for _, name in ipairs { "crawl2.lua", "crawl3.lua" } do
    it(name .. " visits exactly the reachable set, and ends", function()
      local out, err, status = run(name, { s.start_url })
      assert.equal(0, status, err)
      same_set(site.reachable(s, { s.start_url }), (printed(out)))
      -- Every kind of failure is reported, once per failing URL, and the run goes on.
      for _, msg in ipairs { "status 404", "has type text/plain, not HTML",
        "has type image/png, not HTML", "connection refused",
        "server gave HTTP response to HTTPS client" } do
        assert.is_truthy(err:find(msg, 1, true), msg)
      end
    end)

    it(name .. " with -host and -depth visits the pages within that many links", function()
      for _, depth in ipairs { 0, 1, 3 } do
        local out, err, status = run(name, { "-depth", depth, "-host", s.host, s.start_url })
        assert.equal(0, status, err)
        same_set(site.reachable(s, { s.start_url }, { depth = depth, host = s.host }), (printed(out)))
      end
      local out, err, status = run(name, { "-host", s.host, s.start_url })
      assert.equal(0, status, err)
      assert.is_nil(err:find("127.0.0.1:1", 1, true))
      same_set(site.reachable(s, { s.start_url }, { host = s.host }), (printed(out)))
    end)

    it(name .. " starts from several URLs, with a host name without port", function()
      local starts = { s.base .. site.path(2), s.base .. site.path(16), s.base .. site.path(4) }
      local args = { "-depth", "2", "-host", "127.0.0.1" }
      table.move(starts, 1, #starts, #args + 1, args)
      local out, err, status = run(name, args)
      assert.equal(0, status, err)
      -- "127.0.0.1" matches any port: the refused links to 127.0.0.1:1 are printed too.
      same_set(site.reachable(s, starts, { depth = 2, host = "127.0.0.1" }), (printed(out)))
    end)
  end

  it("crawl2's 20 tokens keep it within 64 descriptors", function()
    local out, err, status = run("crawl2.lua", { "-host", s.host, s.start_url }, 15, "ulimit -n 64;")
    assert.equal(0, status, err)
    assert.is_nil(err:find("too many open files", 1, true))
    same_set(site.reachable(s, { s.start_url }, { host = s.host }), (printed(out)))
  end)

  it("crawl1 crawls, then never ends normally: the runtime reports the deadlock", function()
    local out, err, status = run("crawl1.lua", { "-host", s.host, s.start_url }, 10)
    crawled_then_deadlocked(s, out, err, status)
  end)

  it("crawl3_deadlock: 21 new links, 20 crawlers stuck on worklist, main on unseenLinks (the deadlock)", function()
    local args = { "-depth", "0" }
    for i = 1, 25 do args[#args + 1] = s.base .. site.path(i) end
    local out, err, status = run("crawl3_deadlock.lua", args, 10)
    local _, n = printed(out)
    assert.equal(20, n)  -- the 20 crawlers each fetched one page; none got further
    assert.equal(1, status)
    assert.matches("all goroutines are asleep %- deadlock!", err)
    assert.matches("%[chan send%]", err)
    -- crawl3 itself, on the same start URLs, ends
    out, err, status = run("crawl3.lua", args, 10)
    assert.equal(0, status, err)
    assert.equal(25, select(2, printed(out)))
  end)

  it("crawl1 with a goroutine per link runs out of descriptors (the note's failure)", function()
    -- 100 start URLs: 100 fetches start at once, far over a limit of 32 descriptors.
    local args = { "-depth", "0" }
    for i = 1, 100 do args[#args + 1] = s.base .. site.path(i) end
    local out, err = run("crawl1.lua", args, 10, "ulimit -n 32;")
    local _, n = printed(out)
    assert.equal(100, n)
    assert.matches("dial tcp 127%.0%.0%.1:%d+: [^\n]*too many open files", err)
  end)
end)

describe("crawlers on the https copy of the site", function()
  local s
  setup(function() s = site.start(300, 20261129, { tls = true }) end)
  teardown(function() if s then s.stop() end end)

  for _, name in ipairs { "crawl2.lua", "crawl3.lua" } do
    it(name .. " crawls https URLs with SSL_CERT_FILE naming the CA, and no code change", function()
      local out, err, status = run(name, { s.start_url }, 30, "SSL_CERT_FILE=" .. quote(s.ca))
      assert.equal(0, status, err)
      same_set(site.reachable(s, { s.start_url }), (printed(out)))
      assert.is_truthy(err:find("status 400", 1, true), err)   -- plain http to the TLS port
      local _, err2 = run(name, { "-depth", "0", s.start_url })
      assert.matches("x509: certificate signed by unknown authority", err2)
    end)
  end

  it("crawl1.lua crawls https URLs, then reports the deadlock as over http", function()
    local out, err, status = run("crawl1.lua", { "-host", s.host, s.start_url }, 30,
      "SSL_CERT_FILE=" .. quote(s.ca))
    crawled_then_deadlocked(s, out, err, status)
  end)

  it("memo_http.lua and mirrored_http.lua fetch https URLs with SSL_CERT_FILE naming the CA", function()
    local env = "SSL_CERT_FILE=" .. quote(s.ca)
    local out, err, status = run("memo_http.lua", { s.start_url }, 30, env)
    assert.equal(0, status, err)
    assert.matches(s.start_url:gsub("%p", "%%%0") .. ", [%d.]+ ms, %d+ bytes\n", out)
    assert.matches("1 URLs, f called 1 times", out)
    out, err, status = run("mirrored_http.lua", { s.start_url, s.start_url }, 30, env)
    assert.equal(0, status, err)
    assert.matches(": status 200, %d+ bytes after %d+ ms: ", out)
  end)
end)

-- An HTTP server in this process. route(path) -> seconds to wait, body, content type;
-- hits[path] counts requests, at[path] is when the last came. Returns base URL, hits, a stop
-- function and at.
local function serve(route)
  local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
  local hits, at = {}, {}
  csp.go(function()
    while true do
      local c = ln:accept()
      if not c then return end
      csp.go(function()
        local line = c:read_line()
        local path = line and line:match("^GET (%S+)")
        repeat local h = c:read_line() until h == nil or h == ""
        if path then
          hits[path], at[path] = (hits[path] or 0) + 1, csp.now()
          local delay, b, ctype = route(path)
          csp.sleep(delay)
          c:write(("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n" ..
            "Connection: close\r\n\r\n%s"):format(ctype, #b, b))
        end
        c:close()
      end)
    end
  end)
  return "http://" .. ln:addr(), hits, function() ln:close() end, at
end

-- Every path answers "<body> <path>\n" as text after `delay` seconds.
local function httpd(delay, body)
  return serve(function(path) return delay, body .. " " .. path .. "\n", "text/plain" end)
end

describe("crawlers with -depth", function()
  -- /s links to /slow (answers after 0.3 s) and /f1; /f1 -> /f2 -> /x; /slow -> /x; /x -> /y -> /z.
  -- /x is first found at depth 3 (through /f1 and /f2), later at depth 2 through /slow: with
  -- -depth 3 its link /y (depth 3) must then be fetched, /z (depth 4) never.
  local graph = { s = { "slow", "f1" }, slow = { "x" }, f1 = { "f2" }, f2 = { "x" }, x = { "y" },
    y = { "z" }, z = {} }
  for _, name in ipairs { "crawl2.lua", "crawl3.lua" } do
    it(name .. " counts a page's depth by its shortest path, even when found late", function()
      local base, hits, stop, at = serve(function(path)
        local links = {}
        for _, l in ipairs(graph[path:sub(2)] or {}) do links[#links + 1] = ('<a href="%s">%s</a>'):format(l, l) end
        return path == "/slow" and 0.3 or 0, table.concat(links), "text/html"
      end)
      local out, err, status = run(name, { "-depth", "3", base .. "/s" })
      stop()
      assert.equal(0, status, err)
      local want = {}
      for _, p in ipairs { "s", "slow", "f1", "f2", "x", "y" } do want[base .. "/" .. p] = true end
      same_set(want, (printed(out)))
      assert.is_nil(hits["/z"])
      -- /x was fetched (once) before /slow answered, /y after.
      assert.equal(1, hits["/x"])
      assert.is_true(at["/x"] < at["/slow"] + 0.3 and at["/y"] >= at["/slow"] + 0.3)
    end)
  end
end)

describe("memo_http", function()
  it("fetches each URL once; the second round comes from the cache", function()
    local base, hits, stop = httpd(0.2, "slow page")
    local urls = {}
    for i = 1, 5 do urls[i] = base .. "/page/" .. i end
    urls[6] = urls[1] -- a duplicate in the same round waits for the one call
    local out, err, status = run("memo_http.lua", urls)
    stop()
    assert.equal(0, status, err)
    for i = 1, 5 do assert.equal(1, hits["/page/" .. i]) end
    assert.matches("\n6 URLs, f called 5 times\n$", out)
    local r1 = tonumber(out:match("round 1: ([%d.]+) ms"))
    local r2 = tonumber(out:match("round 2: ([%d.]+) ms"))
    assert.is_true(r1 >= 200 and r2 < 50 and r2 < r1 / 4, out)
    -- Per-URL lines: 6 before "round 1", 6 after it, each with the body's size.
    local first, second = out:match("^(.-)round 1[^\n]*\n(.-)round 2")
    local n1, n2 = 0, 0
    for ms in first:gmatch(", ([%d.]+) ms, %d+ bytes\n") do
      n1 = n1 + 1
      assert.is_true(tonumber(ms) >= 200, first)
    end
    for ms in second:gmatch(", ([%d.]+) ms, %d+ bytes\n") do
      n2 = n2 + 1
      assert.is_true(tonumber(ms) < 50, second)
    end
    assert.same({ 6, 6 }, { n1, n2 })
    assert.matches(urls[3]:gsub("%p", "%%%0") .. ", [%d.]+ ms, " .. #"slow page /page/3\n" .. " bytes", first)
  end)

  it("reports a failed fetch and caches the failure too", function()
    local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
    local url = "http://" .. ln:addr() .. "/"
    ln:close()
    local out, err, status = run("memo_http.lua", { url })
    assert.equal(0, status, err)
    local _, n = out:gsub("error: [^\n]*connection refused", "")
    assert.equal(2, n)
    assert.matches("1 URLs, f called 1 times", out)
  end)
end)

describe("mirrored_http", function()
  it("prints the quickest mirror's response, without waiting for the others", function()
    local a, ha, stop_a = httpd(1.5, "mirror A")
    local b, hb, stop_b = httpd(0.05, "mirror B")
    local c, hc, stop_c = httpd(1.0, "mirror C")
    local t0 = csp.now()
    local out, err, status = run("mirrored_http.lua", { a .. "/q", b .. "/q", c .. "/q" })
    local elapsed = csp.now() - t0
    stop_a()
    stop_b()
    stop_c()
    assert.equal(0, status, err)
    assert.matches("^" .. b:gsub("%p", "%%%0") .. "/q: status 200, 12 bytes after %d+ ms: mirror B /q\n$", out)
    assert.same({ 1, 1, 1 }, { ha["/q"], hb["/q"], hc["/q"] })
    assert.is_true(elapsed < 0.9, "waited for a slow mirror: " .. elapsed)
  end)
end)
