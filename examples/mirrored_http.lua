-- mirroredQuery (seed 1.5.2) over real HTTP: the same request goes to every mirror, each from
-- its own goroutine, and the first response wins. The channel has a slot per mirror, so the
-- slower goroutines can still send theirs and end instead of leaking (see mirrored_leak.lua).
--
--   lua5.4 examples/mirrored_http.lua URL...   (e.g. three mirrors of one resource)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("mirrored_http.lua URL...", "the first of the mirrors to answer wins")
local urls = f:rest("URL", 1):parse(arg).rest

local t0 = csp.now()

local function request(url)
  local resp, err = csp.http.get(url)
  local ms = (csp.now() - t0) * 1000
  if not resp then return ("%s: error after %.0f ms: %s"):format(url, ms, err) end
  return ("%s: status %d, %d bytes after %.0f ms: %s"):format(url, resp.status, #resp.body, ms,
    resp.body:match("^[^\n]*"))
end

local function mirrored_query(mirrors)
  local responses = csp.chan(#mirrors)
  for _, url in ipairs(mirrors) do
    csp.go(function() responses:send(request(url)) end)
  end
  return (responses:recv()) -- the quickest response
end

print(mirrored_query(urls))
