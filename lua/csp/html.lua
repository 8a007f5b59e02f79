-- csp.html.links: the C core (csp.html._hrefs: gumbo on libuv's thread pool, hrefs resolved on
-- liburiparser while walking the tree) does the work; this checks the arguments.
--
-- A plain module over csp.core; init.lua installs its links as csp.html.links.
local core = require "csp.core"
local check = require "csp.check"

local absolute, hrefs = core.url._absolute, core.html._hrefs
local MAX_BYTES = 64 * 1024 * 1024   -- as csp.http's default body limit

local M = {}

--- The absolute http(s) URLs of body's <a href> links, in document order, duplicates kept,
--- fragments removed; same-document references ("" and "#x") and other schemes are dropped.
--- Relative links resolve against the document's first <base href>, itself resolved against
--- base_url (an absolute URL). An href is read as browsers read it (surrounding spaces and
--- controls dropped, tabs and newlines removed, what RFC 3986 disallows percent-encoded).
--- Only the first opts.max_bytes bytes are parsed (default 64 MiB, false: all); gumbo runs
--- on libuv's thread pool while the caller parks.
function M.links(body, base_url, opts)
  check.type(body, "string", 1, "links")
  check.type(base_url, "string", 2, "links")
  if not absolute(base_url) then -- as csp.url.parse(base_url).scheme, without the table
    check.arg(false, 2, "links", ("absolute URL expected, got %q"):format(base_url))
  end
  opts = check.opts(opts, 3, "links")
  local max = opts.max_bytes
  if max == false then
    max = nil
  elseif max == nil then
    max = MAX_BYTES
  else
    check.fieldarg(math.type(max) == "integer" and max >= 0, "max_bytes", 3, "links",
      "non-negative integer or false expected")
  end
  return (hrefs(body, base_url, max))
end

return M
