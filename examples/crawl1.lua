-- crawl1: the concurrent web crawler, version 1 (seed 1.7.1, gopl.io/ch8/crawl1): a goroutine
-- per link, nothing bounds them. On a real site this opens as many connections at once as
-- there are new links, and fails as the note shows: "socket: too many open files" (here
-- "dial tcp ...: too many open files", printed as each fetch fails). Nor does it end: the main
-- loop waits on the worklist forever. In Go idle connections keep that wait alive; in csp
-- nothing can wake it, so once the crawl is done the runtime reports
-- "all goroutines are asleep - deadlock!" and the program exits non-zero. crawl2 fixes both.
--
--   lua5.4 examples/crawl1.lua [-depth N] [-host HOST] URL...
local csp = require "csp"

-- Options: -depth N (fetch only pages at most N links from a start URL), -host HOST (follow only
-- links to HOST: "name" or "name:port"); the rest are the start URLs.
local maxdepth, host
local urls = {}
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "-depth" or a == "-host" then
      local v = arg[i + 1] or error(a .. ": missing value")
      if a == "-depth" then maxdepth = assert(math.tointeger(tonumber(v)), "-depth: not an integer")
      else host = v end
      i = i + 2
    else
      urls[#urls + 1] = a
      i = i + 1
    end
  end
  if #urls == 0 then
    io.stderr:write("usage: lua5.4 ", arg[0], " [-depth N] [-host HOST] URL...\n")
    os.exit(2)
  end
end

-- links.Extract of the Go book: the absolute links of an HTML page, or nil, err.
local function extract(url)
  local resp, err = csp.http.get(url)
  if not resp then return nil, err end
  if resp.status ~= 200 then return nil, ("getting %s: status %d"):format(url, resp.status) end
  local ctype = resp.headers["content-type"] or ""
  if not ctype:lower():find("^%s*text/html") then
    return nil, ("%s has type %s, not HTML"):format(url, ctype)
  end
  return csp.html.links(resp.body, resp.url)
end

local function crawl(url)
  print(url)
  local list, err = extract(url)
  if not list then io.stderr:write(err, "\n") end -- log.Print: a failed page has no links
  return list or {}
end

local function on_host(url)
  if not host then return true end
  local auth = url:match("^%a[%w+.-]*://([^/?#]*)")
  if not auth then return false end
  auth = auth:match("([^@]*)$")
  if host:find(":", 1, true) and not host:match("^%[.*%]$") then return auth == host end
  return (auth:match("^(%[.*%])") or auth:match("^([^:]*)")) == host
end

-- Deduplication with -depth: seen[url] is the smallest depth the url was found at. Results
-- come back in any order, so a page can first be found by a long path and later by a shorter
-- one; its links (kept in found[url]) are then walked again from the new depth, without a
-- second fetch, so exactly the pages within -depth links are fetched.
local seen, found = {}, {}
local function visit(list, depth, schedule)
  if maxdepth and depth > maxdepth then return end
  for _, link in ipairs(list) do
    if on_host(link) then
      local d = seen[link]
      if d == nil then
        seen[link] = depth
        schedule(link)
      elseif depth < d then
        seen[link] = depth
        if found[link] then visit(found[link], depth + 1, schedule) end
      end
    end
  end
end

-- A crawled page's links, at one more than the page's (smallest known) depth.
local function visit_found(item, schedule)
  if item.from == nil then return visit(item.links, 0, schedule) end
  if maxdepth then found[item.from] = item.links end
  visit(item.links, seen[item.from] + 1, schedule)
end

local worklist = csp.chan() -- lists of URLs, may have duplicates
-- Started from its own goroutine: main and the crawlers would otherwise both send first.
csp.go(function() worklist:send({ links = urls }) end)

while true do
  visit_found(worklist:recv(), function(link)
    csp.go(function() worklist:send({ from = link, links = crawl(link) }) end)
  end)
end
