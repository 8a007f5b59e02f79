-- crawl3: the concurrent web crawler, version 4 (seed 1.7.4, gopl.io/ch8/crawl3): 20
-- long-lived crawler goroutines take de-duplicated links from unseenLinks; main de-duplicates.
-- A crawler sends the links it found from a goroutine of its own: main sends on unseenLinks
-- and then receives from worklist, a crawler does the opposite, so with 21 new links 20
-- crawlers blocked on worklist and main blocked on unseenLinks would deadlock. Unlike the
-- seed, main counts the lists still to come (n) so the program ends when the crawl is done.
--
--   lua5.4 examples/crawl3.lua [-depth N] [-host HOST] URL...
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local links = require "links" -- links.Extract, the command line, which links to crawl

local maxdepth, host, urls = links.args(arg)
local visit_found = links.visitor(maxdepth, host)

local function crawl(url)
  print(url)
  local list, err = links.extract(url)
  if not list then io.stderr:write(err, "\n") end -- log.Print: a failed page has no links
  return list or {}
end

local worklist = csp.chan() -- lists of URLs, may have duplicates
local unseen = csp.chan() -- de-duplicated URLs
local n = 1 -- lists still to come on worklist: one per link sent to a crawler
csp.go(function() worklist:send({ links = urls }) end)

for _ = 1, 20 do
  csp.go(function()
    for link in unseen:range() do
      local found = crawl(link)
      csp.go(function() worklist:send({ from = link, links = found }) end)
    end
  end)
end

while n > 0 do
  local item = worklist:recv()
  n = n - 1
  visit_found(item, function(link)
    n = n + 1
    unseen:send(link)
  end)
end
unseen:close() -- the crawlers end
