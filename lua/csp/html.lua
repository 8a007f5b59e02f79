-- csp.html.links: the C core (csp.html._hrefs: gumbo on libuv's thread pool, hrefs resolved on
-- liburiparser while walking the tree) does the work; this checks the arguments.
-- Loaded by init.lua as `csp.html.links = require("csp.html")(csp)`.
return function(csp)
  local url = csp.url
  local hrefs = csp.html._hrefs
  local MAX_BYTES = 64 * 1024 * 1024   -- as csp.http's default body limit

  --- The absolute http(s) URLs of body's <a href> links, in document order, duplicates kept,
  --- fragments removed; same-document references ("" and "#x") and other schemes are dropped.
  --- Relative links resolve against the document's first <base href>, itself resolved against
  --- base_url (an absolute URL). An href is read as browsers read it (surrounding spaces and
  --- controls dropped, tabs and newlines removed, what RFC 3986 disallows percent-encoded).
  --- Only the first opts.max_bytes bytes are parsed (default 64 MiB, false: all); gumbo runs
  --- on libuv's thread pool while the caller parks.
  return function(body, base_url, opts)
    if type(body) ~= "string" then
      error(("bad argument #1 to 'links' (string expected, got %s)"):format(type(body)), 2)
    end
    if type(base_url) ~= "string" then
      error(("bad argument #2 to 'links' (string expected, got %s)"):format(type(base_url)), 2)
    end
    local b = url.parse(base_url)
    if not b or not b.scheme then
      error(("bad argument #2 to 'links' (absolute URL expected, got %q)"):format(base_url), 2)
    end
    local max = MAX_BYTES
    if opts ~= nil then
      if type(opts) ~= "table" then
        error(("bad argument #3 to 'links' (table expected, got %s)"):format(type(opts)), 2)
      end
      max = opts.max_bytes
      if max == false then
        max = nil
      elseif max == nil then
        max = MAX_BYTES
      elseif math.type(max) ~= "integer" or max < 0 then
        error("bad argument #3 to 'links' (opts.max_bytes must be a non-negative integer or false)", 2)
      end
    end
    return (hrefs(body, base_url, max))
  end
end
