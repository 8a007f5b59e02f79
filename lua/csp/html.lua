-- csp.html.links: the C core (csp.html._hrefs, gumbo) finds the hrefs; this resolves and filters them.
-- Loaded by init.lua as `csp.html.links = require("csp.html")(csp)`.
local check = require "csp.check"

return function(csp)
  local url = csp.url
  local hrefs = csp.html._hrefs

  -- As browsers read an attribute URL: surrounding spaces and control characters are dropped,
  -- tabs and newlines inside are removed (WHATWG URL parser).
  local function clean(h)
    return (h:gsub("^[\0-\32]+", ""):gsub("[\0-\32]+$", ""):gsub("[\t\n\r]", ""))
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
  --- base_url (an absolute URL).
  return function(body, base_url)
    check.type(body, "string", 1, "links")
    check.type(base_url, "string", 2, "links")
    local b = url.parse(base_url)
    if not (b and b.scheme) then
      check.arg(false, 2, "links", ("absolute URL expected, got %q"):format(base_url))
    end
    local list, base_href = hrefs(body)
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
