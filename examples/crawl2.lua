-- crawl2: the concurrent web crawler, versions 2 and 3 (seed 1.7.2-1.7.3, gopl.io/ch8/crawl2):
-- still a goroutine per link, but a channel of 20 tokens bounds the fetches in progress, and
-- main counts the sends pending on the worklist (n) so it ends when the crawl is done.
--
--   lua5.4 examples/crawl2.lua [-depth N] [-host HOST] URL...
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

-- tokens is a counting semaphore that bounds the concurrent requests to 20.
local tokens = csp.chan(20)

local function crawl(url)
  print(url)
  tokens:send(true) -- acquire a token
  local list, err = extract(url)
  tokens:recv() -- release the token
  if not list then io.stderr:write(err, "\n") end
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

local worklist = csp.chan()
local n = 1 -- number of pending sends to worklist
csp.go(function() worklist:send({ links = urls }) end)

while n > 0 do
  local item = worklist:recv()
  n = n - 1
  visit_found(item, function(link)
    n = n + 1
    csp.go(function() worklist:send({ from = link, links = crawl(link) }) end)
  end)
end
