-- The concurrent non-blocking cache (seed 2.6, gopl.io/ch9/memo) over real HTTP: csp.memo
-- around csp.http.get. Each URL is fetched by its own goroutine, twice: the first round goes
-- to the network, the second is served from the cache. Prints each URL's time, each round's
-- time and how many times the memoized function ran.
--
--   lua5.4 examples/memo_http.lua URL...
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("memo_http.lua URL...", "csp.memo over csp.http.get: each URL fetched twice")
local urls = f:rest("URL", 1):parse(arg).rest

local calls = 0
local function http_get_body(url)
  calls = calls + 1
  local resp, err = csp.http.get(url)
  if not resp then return nil, err end
  return resp.body
end

local m = csp.memo(http_get_body)

for round = 1, 2 do
  local t0 = csp.now()
  local wg = csp.waitgroup()
  for _, url in ipairs(urls) do
    wg:go(function()
      local start = csp.now()
      local body, err = m:get(url)
      local ms = (csp.now() - start) * 1000
      if body then
        print(("%s, %.3f ms, %d bytes"):format(url, ms, #body))
      else
        print(("%s, %.3f ms, error: %s"):format(url, ms, err))
      end
    end)
  end
  wg:wait()
  print(("round %d: %.3f ms"):format(round, (csp.now() - t0) * 1000))
end
print(("%d URLs, f called %d times"):format(#urls, calls))
