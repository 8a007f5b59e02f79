-- csp.html.links: the C core (csp.html._hrefs, gumbo) finds the hrefs; this resolves and filters them.
-- Loaded by init.lua as `csp.html.links = require("csp.html")(csp)`.
return function(csp)
  local url = csp.url
  local hrefs = csp.html._hrefs

  -- As browsers read an attribute URL: surrounding spaces and control characters are dropped,
  -- tabs and newlines inside are removed (WHATWG URL parser).
  -- Linear: an anchored-at-end pattern ("[\0-\32]+$") retries from every byte of a long run of
  -- spaces inside the value (issue 9.7: 40k spaces stalled every goroutine 5 s).
  local function clean(h)
    local i = h:find("[^\0-\32]")
    if not i then return "" end
    local j = #h
    while h:byte(j) <= 32 do j = j - 1 end
    return (h:sub(i, j):gsub("[\t\n\r]", ""))
  end

  local function pct(c) return ("%%%02X"):format(c:byte()) end

  -- The resolved URL without its fragment, made a valid URI the way browsers send it (bytes
  -- RFC 3986 disallows after the authority percent-encoded, a stray "%" as "%25"), normalised
  -- by url.parse/format (lowercase scheme and host); nil unless http(s) with a host.
  local function finish(abs)
    local head, rest = abs:match("^([^:/?#]+://[^/?#]*)([^#]*)")
    if not head then return nil end
    rest = rest:gsub("%%(%x?%x?)", function(x)
      if not x:find("^%x%x$") then return "%25" .. x end
    end):gsub("[^%w%-%._~!%$&'%(%)%*%+,;=:@/%?%%]", pct)
    local t = url.parse(head .. rest)
    if not t or (t.scheme ~= "http" and t.scheme ~= "https") or t.host == "" then return nil end
    return url.format(t)
  end

  --- The absolute http(s) URLs of body's <a href> links, in document order, duplicates kept,
  --- fragments removed; same-document references ("" and "#x") and other schemes are dropped.
  --- Relative links resolve against the document's first <base href>, itself resolved against
  --- base_url (an absolute URL). Only the first opts.max_bytes bytes are parsed (default 64 MiB,
  --- false: all); gumbo runs on libuv's thread pool while the caller parks.
  local MAX_BYTES = 64 * 1024 * 1024   -- as csp.http's default body limit

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
    local list, base_href = hrefs(body, max)
    local base = base_url
    if base_href then
      -- An unusable <base href> leaves the document's own URL in force, as in browsers.
      base = url.resolve(base_url, clean(base_href)) or base_url
    end
    local out = {}
    for _, h in ipairs(list) do
      h = clean(h)
      if h ~= "" and h:sub(1, 1) ~= "#" then
        local u = finish(url.resolve(base, h))
        if u then out[#out + 1] = u end
      end
    end
    return out
  end
end
