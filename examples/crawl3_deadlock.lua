-- crawl3_deadlock: crawl3 (seed 1.7.4) with the bug the note explains, kept apart on purpose:
-- a crawler sends the links it found to worklist itself, not from a goroutine of its own. Main
-- sends on unseenLinks, then receives from worklist; a crawler receives from unseenLinks, then
-- sends on worklist. With 21 new links, 20 crawlers block on worklist while main blocks on the
-- 21st send to unseenLinks: nobody can go on, and the runtime reports the deadlock (a site
-- with few links per page may get through, as it would in Go).
--
--   lua5.4 examples/crawl3_deadlock.lua [-depth N] [-host HOST] URL...
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
      worklist:send({ from = link, links = found }) -- the bug: not from a goroutine of its own
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
