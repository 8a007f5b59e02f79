-- crawl2: the concurrent web crawler, versions 2 and 3 (seed 1.7.2-1.7.3, gopl.io/ch8/crawl2):
-- still a goroutine per link, but a channel of 20 tokens bounds the fetches in progress, and
-- main counts the sends pending on the worklist (n) so it ends when the crawl is done.
--
--   lua5.4 examples/crawl2.lua [-depth N] [-host HOST] URL...
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local links = require "links" -- links.Extract, the command line, which links to crawl

local maxdepth, host, urls = links.args(arg)
local visit_found = links.visitor(maxdepth, host)

-- tokens is a counting semaphore that bounds the concurrent requests to 20.
local tokens = csp.chan(20)

local function crawl(url)
  print(url)
  tokens:send(true) -- acquire a token
  local list, err = links.extract(url)
  tokens:recv() -- release the token
  if not list then io.stderr:write(err, "\n") end
  return list or {}
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
