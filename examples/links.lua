-- links: what crawl1-3 share, as the Go book's crawlers share gopl.io/ch5/links: extract (the
-- links of a page), the command line (-depth N, -host HOST, start URLs) and the bookkeeping that
-- decides which found links to crawl. Each crawler keeps its own crawl function and main loop.
local csp = require "csp"
local flags = require "flags"

local M = {}

-- The command line (examples/flags.lua, Go's flag package): returns maxdepth (or nil), host
-- (or nil), the start URLs.
function M.args(argv)
  local name = (argv[0] or "crawl.lua"):match("([^/]*)$")
  local f = flags.new(name .. " [-depth N] [-host HOST] URL...", "a concurrent web crawler")
  f:flag("depth", "int", nil, "crawl at most N links deep from the start URLs", { min = 0, meta = "N" })
  f:flag("host", "string", nil, "crawl only the links to this host", { meta = "HOST" })
  local opts = f:rest("URL", 1):parse(argv)
  return opts.depth, opts.host, opts.rest
end

-- links.Extract of the Go book: the absolute links of an HTML page, or nil, err.
function M.extract(url)
  local resp, err = csp.http.get(url)
  if not resp then return nil, err end
  if resp.status ~= 200 then return nil, ("getting %s: status %d"):format(url, resp.status) end
  local ctype = resp.headers["content-type"] or ""
  if not ctype:lower():find("^%s*text/html") then
    return nil, ("%s has type %s, not HTML"):format(url, ctype)
  end
  return csp.html.links(resp.body, resp.url)
end

-- -host HOST as a test of a URL: with a port, HOST is compared with the URL's authority (Go's
-- u.Host), without one with its host name (u.Hostname()); which of the two is decided once.
local function host_filter(host)
  if not host then return function() return true end end
  local by_authority = host:find(":", 1, true) and not host:match("^%[.*%]$")
  return function(url)
    local auth = url:match("^%a[%w+.-]*://([^/?#]*)")
    if not auth then return false end
    if auth:find("@", 1, true) then auth = auth:match("([^@]*)$") end
    if by_authority then return auth == host end
    return (auth:match("^(%[.*%])") or auth:match("^([^:]*)")) == host
  end
end

-- A visitor for one crawl with -depth maxdepth and -host host: visit(item, schedule) takes a
-- worklist item {links=, from=page or nil for the start URLs} and calls schedule(link) for
-- every link to crawl, once each.
function M.visitor(maxdepth, host)
  local seen, found, on_host = {}, {}, host_filter(host)
  -- Deduplication with -depth: seen[url] is the smallest depth the url was found at. Results
  -- come back in any order, so a page can first be found by a long path and later by a shorter
  -- one; its links (kept in found[url]) are then walked again from the new depth, without a
  -- second fetch, so exactly the pages within -depth links are fetched.
  local function visit(list, depth, schedule)
    if maxdepth and depth > maxdepth then return end
    for _, link in ipairs(list) do
      local d = seen[link] -- only links on the host are seen: those need no second test
      if d == nil then
        if on_host(link) then
          seen[link] = depth
          schedule(link)
        end
      elseif depth < d then
        seen[link] = depth
        if found[link] then visit(found[link], depth + 1, schedule) end
      end
    end
  end

  -- A crawled page's links, at one more than the page's (smallest known) depth.
  local function visit_found(item, schedule)
    if item.from == nil then return visit(item.links, 0, schedule) end
    if maxdepth then found[item.from] = item.links end
    visit(item.links, seen[item.from] + 1, schedule)
  end
  return visit_found
end

return M
