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
-- Started from its own goroutine: main and the crawlers would otherwise both send first.
csp.go(function() worklist:send({ links = urls }) end)

while true do
  visit_found(worklist:recv(), function(link)
    csp.go(function() worklist:send({ from = link, links = crawl(link) }) end)
  end)
end
