-- A generated web site for the crawler specs and benchmark, served by a real HTTP server
-- (nginx, or python3 -m http.server if nginx is missing) on 127.0.0.1, and the set of URLs a
-- crawler must visit, computed from the generated link graph.
--
--   local site = require "spec.helpers.site"   -- or dofile
--   local s = site.start(300, seed)            -- generate + serve; s.base = "http://127.0.0.1:PORT"
--   s.start_url                                -- the page to crawl from
--   site.reachable(s, { s.start_url }, { depth = 2, host = "127.0.0.1:PORT" })  -- set of URLs
--   s:stop()
--
-- The site, for n pages (page i at path(i)):
--   /p/i.html            most pages; relative, root-relative and absolute links
--   /q/i.html            pages with <base href> pointing at /p/ (relative links resolve there:
--                        a crawler that ignores <base> fetches /q/... 404s instead)
--   /d/i/index.html      pages behind a redirect: linked as /d/i (301 to /d/i/), their relative
--                        links are only right when resolved against the final URL
--   /f/i.txt, /f/i.png   non-HTML files; the .txt holds an <a href> to a hidden page that a
--                        crawler must not follow (it is not HTML)
--   /missing/i.html      404s
--   http://127.0.0.1:1/  another host (connection refused), links to the other scheme on the same port, and
--                        mailto:, javascript:, fragment-only links that links() drops
-- Pages numbered above 0.9 n are linked from nowhere but the .txt files: never reachable.
-- A crawler prints every link it finds once (fetch errors included, as the Go book's crawl);
-- only 200 text/html pages (after redirects) contribute links.
local M = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function path(i)
  if i % 11 == 5 then return "/d/" .. i .. "/" end
  if i % 7 == 3 then return "/q/" .. i .. ".html" end
  return "/p/" .. i .. ".html"
end

-- How a page is linked to: a /d/ page by its redirecting form (mostly).
local function link_path(i, r)
  local p = path(i)
  if p:sub(1, 3) == "/d/" and r < 0.8 then return p:sub(1, -2) end
  return p
end

-- Relative reference from directory `dir` (ends in "/") to absolute path `p`.
local function rel(dir, p)
  local a, b = {}, {}
  for s in dir:gmatch("[^/]+") do a[#a + 1] = s end
  local file = p:match("[^/]*$")
  for s in p:sub(1, #p - #file):gmatch("[^/]+") do b[#b + 1] = s end
  local k = 0
  while k < #a and k < #b and a[k + 1] == b[k + 1] do k = k + 1 end
  local out = {}
  for _ = k + 1, #a do out[#out + 1] = ".." end
  for j = k + 1, #b do out[#out + 1] = b[j] end
  out[#out + 1] = file
  local s = table.concat(out, "/")
  if s == "" then s = "./" end
  return s
end

local function write(file, s)
  local f = assert(io.open(file, "wb"))
  f:write(s)
  f:close()
end

-- Writes the site under root/www for server base (http://127.0.0.1:PORT); returns the model:
-- { base=, start_url=, links = { [url] = array of absolute URLs the page links to } } where
-- links[url] is set only for URLs that answer 200 text/html (after redirects).
function M.generate(root, n, seed, base)
  local rnd = math.random
  if seed then math.randomseed(seed) end
  local www = root .. "/www"
  local model = { base = base, links = {}, n = n, start_url = base .. path(1) }
  local visible = math.floor(n * 0.9)
  local dirs = {}
  for i = 1, n do dirs[path(i):match("^(.*/)")] = true end
  dirs["/f/"] = true
  for d in pairs(dirs) do os.execute("mkdir -p " .. quote(www .. d)) end

  for i = 1, n do
    local p = path(i)
    local dir = p:match("^(.*/)")      -- the document's directory (final URL for /d/)
    local head, resolve_dir = "", dir
    if p:sub(1, 3) == "/q/" then
      if i % 2 == 0 then
        head = '<base href="/p/">'
      else
        head = '<base href="' .. base .. '/p/">'
      end
      resolve_dir = "/p/"
    end
    local body, targets = {}, {}
    local function add(href, url)
      body[#body + 1] = ('<li><a href="%s">link %d</a></li>'):format(href, #body + 1)
      if url then targets[#targets + 1] = url end
    end
    local k = rnd(0, 6)
    for _ = 1, k do
      local r = rnd()
      if r < 0.70 then
        local j = rnd(1, visible)
        local lp = link_path(j, rnd())
        local form = rnd()
        if form < 0.5 then
          add(rel(resolve_dir, lp), base .. lp)
        elseif form < 0.8 then
          add(lp, base .. lp)
        else
          add(base .. lp, base .. lp)
        end
      elseif r < 0.78 then
        local m = "/missing/" .. rnd(1, n) .. ".html"
        add(m, base .. m)
      elseif r < 0.86 then
        local f = "/f/" .. rnd(1, n) .. (rnd() < 0.5 and ".txt" or ".png")
        add(rel(resolve_dir, f), base .. f)
      elseif r < 0.90 then
        local u = "http://127.0.0.1:1/ext/" .. rnd(1, n) .. ".html"
        add(u, u)
      elseif r < 0.93 then
        -- the other scheme on the same port: a TLS handshake with a plain server, or plain
        -- HTTP to the TLS copy of the site (nginx answers 400)
        local u = (base:find("^https:") and "http:" or "https:") .. base:match("^%a+:(.*)$") .. "/p/1.html"
        add(u, u)
      elseif r < 0.95 then
        add("mailto:crawler@example.com", nil)
      elseif r < 0.97 then
        add("javascript:void(0)", nil)
      else
        add("#top", nil)
      end
    end
    local html = ('<!DOCTYPE html>\n<html><head><title>page %d</title>%s</head>\n' ..
      '<body id="top"><h1>page %d</h1><ul>\n%s\n</ul></body></html>\n')
      :format(i, head, i, table.concat(body, "\n"))
    write(www .. (p:sub(-1) == "/" and p .. "index.html" or p), html)
    model.links[base .. p] = targets
    if p:sub(1, 3) == "/d/" then model.links[base .. p:sub(1, -2)] = targets end
  end
  -- Non-HTML files: every /f/i.txt and /f/i.png exists; the text names a hidden page.
  for i = 1, n do
    local hidden = path(rnd(visible + 1, n))
    write(www .. "/f/" .. i .. ".txt", ('not HTML: <a href="%s">hidden</a>\n'):format(hidden))
    write(www .. "/f/" .. i .. ".png", "\137PNG\r\n\26\n" .. ('<a href="%s">x</a>'):format(hidden))
  end
  return model
end

-- The host of an absolute URL: "host:port" when `host` has a port, else the name alone
-- (the examples' -host option compares the same way).
local function host_ok(url, host)
  if not host then return true end
  local auth = url:match("^%a[%w+.-]*://([^/?#]*)")
  if not auth then return false end
  auth = auth:match("([^@]*)$")
  if host:find(":", 1, true) and not host:match("^%[.*%]$") then return auth == host end
  return (auth:match("^(%[.*%])") or auth:match("^([^:]*)")) == host
end
M.host_ok = host_ok

-- The URLs a crawler started at `starts` prints: breadth-first from depth 0, links of a page
-- at depth d (< opts.depth when given) at depth d + 1, only URLs on opts.host when given.
function M.reachable(model, starts, opts)
  opts = opts or {}
  local dist, queue, set = {}, {}, {}
  for _, u in ipairs(starts) do
    if host_ok(u, opts.host) and not dist[u] then
      dist[u] = 0
      queue[#queue + 1] = u
    end
  end
  local qi = 1
  while qi <= #queue do
    local u = queue[qi]
    qi = qi + 1
    set[u] = true
    local links = model.links[u]
    if links and (opts.depth == nil or dist[u] < opts.depth) then
      for _, t in ipairs(links) do
        if dist[t] == nil and host_ok(t, opts.host) then
          dist[t] = dist[u] + 1
          queue[#queue + 1] = t
        end
      end
    end
  end
  return set
end

local function slurp(file)
  local f = io.open(file, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function free_port()
  local csp = require "csp"
  local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
  local port = tonumber(ln:addr():match(":(%d+)$"))
  ln:close()
  return port
end

local NGINX_CONF = [[
daemon off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
%s
  keepalive_requests 100000;
  client_body_temp_path %s/tmp;
  proxy_temp_path %s/tmp;
  fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp;
  scgi_temp_path %s/tmp;
  server {
    listen 127.0.0.1:%d%s;
    root %s/www;
%s  }
}
]]

-- Over TLS (opts.tls): h2 by ALPN, HTTP/1.1 otherwise, with the certificate of helpers/tls.lua.
local NGINX_TLS = [[
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 1000;
]]

-- CSP_SITE_LOG=1 (a diagnostic): root/access.log gets a line per request with the connection's
-- number, its protocol and whether its TLS session was resumed; off otherwise (the benchmarks).
local function access_log(root)
  if os.getenv("CSP_SITE_LOG") ~= "1" then return "  access_log off;" end
  return ("  log_format conn '$connection $server_protocol $ssl_protocol reused=$ssl_session_reused';\n"
    .. "  access_log %s/access.log conn;"):format(root)
end

local function nginx_bin()
  for _, p in ipairs { "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx" } do
    local f = io.open(p)
    if f then f:close() return p end
  end
end

-- Serves root/www on 127.0.0.1:port; returns the server's pid and kind. Waits until it accepts.
-- nginx when installed, else python3; CSP_SITE_SERVER=python3 forces the fallback.
function M.serve(root, port, kind, tls)
  kind = kind or os.getenv("CSP_SITE_SERVER") or (nginx_bin() and "nginx" or "python3")
  if tls then kind = "nginx" end
  local cmd
  if kind == "nginx" then
    os.execute("mkdir -p " .. quote(root .. "/tmp"))
    local extra = tls and NGINX_TLS:format(tls.cert, tls.key) or ""
    write(root .. "/nginx.conf", NGINX_CONF:format(root, root, access_log(root), root, root, root, root,
      root, port,
      tls and " ssl http2" or "", root, extra))
    cmd = ("%s -p %s -c %s -e %s"):format(nginx_bin(), quote(root), quote(root .. "/nginx.conf"),
      quote(root .. "/error.log"))
  else
    cmd = ("python3 -m http.server %d --bind 127.0.0.1 --directory %s"):format(port, quote(root .. "/www"))
  end
  os.execute("chmod -R a+rX " .. quote(root))  -- nginx workers run as nobody
  local pidf = root .. "/server.pid"
  os.execute(("%s >%s 2>&1 </dev/null & echo $! >%s"):format(cmd, quote(root .. "/server.log"), quote(pidf)))
  local pid = assert(slurp(pidf):match("%d+"))
  local csp = require "csp"
  for _ = 1, 500 do
    local c = csp.net.dial("tcp", "127.0.0.1:" .. port)
    if c then
      c:close()
      return pid, kind
    end
    csp.sleep(0.01)
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  error(kind .. " did not start: " .. slurp(root .. "/server.log") .. slurp(root .. "/error.log"))
end

-- Generates an n-page site in a new temporary directory and serves it.
-- Returns the model plus s.root, s.kind and s:stop() (kills the server, removes the files).
function M.start(n, seed, opts)
  opts = opts or {}
  local p = assert(io.popen("mktemp -d /tmp/csp-site.XXXXXX"))
  local root = p:read("l")
  p:close()
  local port = opts.port or free_port()
  local base = (opts.tls and "https" or "http") .. "://127.0.0.1:" .. port
  local model = M.generate(root, n, seed, base)
  model.root, model.port, model.host = root, port, "127.0.0.1:" .. port
  local tls = opts.tls and require("spec.helpers.tls").make(root)
  model.ca = tls and tls.ca
  local pid, kind = M.serve(root, port, opts.kind, tls)
  model.kind, model.pid = kind, pid
  function model.stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    -- The port must be free again before the files go (nginx's master waits for its worker).
    for _ = 1, 200 do
      if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
      os.execute("sleep 0.01")
    end
    if not opts.keep then os.execute("rm -rf " .. quote(root)) end
  end
  return model
end

M.path = path
return M
