-- csp.url: RFC 3986 URI references: parse (with validation), resolve (section 5.2) and format (5.3).
local check = require "csp.check"

local url = {}

-- Appendix B's regular expression, which every string matches: scheme, authority, query and
-- fragment are nil when absent; the path is always a string (possibly empty), as in section 5.3.
local function split(s)
  local scheme, rest = s:match("^([^:/?#]+):(.*)$")
  if not scheme then rest = s end
  local authority
  if rest:sub(1, 2) == "//" then
    authority = rest:match("^//([^/?#]*)")
    rest = rest:sub(#authority + 3)
  end
  local path = rest:match("^[^?#]*")
  rest = rest:sub(#path + 1)
  local query, fragment
  if rest:sub(1, 1) == "?" then
    query = rest:match("^%?([^#]*)")
    rest = rest:sub(#query + 2)
  end
  if rest:sub(1, 1) == "#" then fragment = rest:sub(2) end
  return scheme, authority, path, query, fragment
end

-- Section 5.3.
local function recompose(scheme, authority, path, query, fragment)
  local out = {}
  if scheme then out[#out + 1] = scheme .. ":" end
  if authority then out[#out + 1] = "//" .. authority end
  out[#out + 1] = path
  if query then out[#out + 1] = "?" .. query end
  if fragment then out[#out + 1] = "#" .. fragment end
  return table.concat(out)
end

-- Section 5.2.4.
local function remove_dot_segments(input)
  local out = {}
  while input ~= "" do
    if input:sub(1, 3) == "../" then
      input = input:sub(4)
    elseif input:sub(1, 2) == "./" then
      input = input:sub(3)
    elseif input:sub(1, 3) == "/./" then
      input = input:sub(3)
    elseif input == "/." then
      input = "/"
    elseif input:sub(1, 4) == "/../" or input == "/.." then
      input = "/" .. input:sub(5)
      out[#out] = nil
    elseif input == "." or input == ".." then
      input = ""
    else
      local seg = input:match("^/?[^/]*")
      out[#out + 1] = seg
      input = input:sub(#seg + 1)
    end
  end
  return table.concat(out)
end

-- Section 5.2.3.
local function merge(base_authority, base_path, ref_path)
  if base_authority and base_path == "" then return "/" .. ref_path end
  return (base_path:match("^(.*/)") or "") .. ref_path
end

--- RFC 3986 section 5.2.2 (strict: a scheme in ref is never taken as relative): the target of
--- ref against the absolute URI base, or nil, err when base has no scheme.
function url.resolve(base, ref)
  check.type(base, "string", 1, "resolve")
  check.type(ref, "string", 2, "resolve")
  local bs, ba, bp, bq = split(base)
  if not bs then return nil, ("resolve %q: base URL is not absolute"):format(base) end
  local rs, ra, rp, rq, rf = split(ref)
  local ts, ta, tp, tq
  if rs then
    ts, ta, tp, tq = rs, ra, remove_dot_segments(rp), rq
  else
    if ra then
      ta, tp, tq = ra, remove_dot_segments(rp), rq
    else
      if rp == "" then
        tp, tq = bp, rq or bq
      else
        if rp:sub(1, 1) == "/" then
          tp = remove_dot_segments(rp)
        else
          tp = remove_dot_segments(merge(ba, bp, rp))
        end
        tq = rq
      end
      ta = ba
    end
    ts = bs
  end
  return recompose(ts, ta, tp, tq, rf)
end

-- Character classes of section 2 and 3 (as Lua pattern sets, without pct-encoded).
local UNRESERVED_SUB = "%w%-%._~!%$&'%(%)%*%+,;="
local CLASS = {
  userinfo = "^[" .. UNRESERVED_SUB .. ":]*$",
  regname = "^[" .. UNRESERVED_SUB .. "]*$",
  path = "^[" .. UNRESERVED_SUB .. ":@/]*$",
  query = "^[" .. UNRESERVED_SUB .. ":@/%?]*$",
}

-- s made of the class's characters and well-formed percent-encodings.
local function valid(s, class)
  return (s:gsub("%%%x%x", "")):find(CLASS[class]) ~= nil
end

local function valid_ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs { a, b, c, d } do
    if #x > 3 or tonumber(x) > 255 or (#x > 1 and x:sub(1, 1) == "0") then return false end
  end
  return true
end

-- Section 3.2.2's IPv6address: eight 16-bit groups (the last two may be an IPv4 address),
-- one "::" standing for one or more zero groups.
local function valid_ipv6(s)
  local head, tail = s, nil
  local i = s:find("::", 1, true)
  if i then
    head, tail = s:sub(1, i - 1), s:sub(i + 2)
    if tail:find("::", 1, true) then return false end
  end
  local function groups(part, last)
    if part == "" then return 0 end
    local n, fields = 0, {}
    for f in (part .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = f end
    for k, f in ipairs(fields) do
      if last and k == #fields and f:find(".", 1, true) then
        if not valid_ipv4(f) then return nil end
        n = n + 2
      elseif f:match("^%x%x?%x?%x?$") then
        n = n + 1
      else
        return nil
      end
    end
    return n
  end
  if tail == nil then return groups(head, true) == 8 end
  local nh, nt = groups(head, false), groups(tail, true)
  return nh ~= nil and nt ~= nil and nh + nt <= 7
end

local function valid_host(h)
  local lit = h:match("^%[(.*)%]$")
  if lit then
    if lit:match("^[vV]%x+%.") then
      return lit:find("^[vV]%x+%.[" .. UNRESERVED_SUB .. ":]+$") ~= nil
    end
    return valid_ipv6(lit)
  end
  return valid(h, "regname")
end

--- The components of the URI reference s ({scheme=, userinfo=, host=, port=, path=, query=,
--- fragment=}; absent ones nil, path always a string; scheme and host lowercased, port an
--- integer), or nil, err when s is not a URI reference by RFC 3986's grammar.
function url.parse(s)
  check.type(s, "string", 1, "parse")
  local function bad(what, v)
    return nil, ("parse %q: invalid %s %q"):format(s, what, v)
  end
  local scheme, authority, path, query, fragment = split(s)
  local t = { path = path, query = query, fragment = fragment }
  if scheme then
    if not scheme:find("^%a[%w%+%-%.]*$") then return bad("scheme", scheme) end
    t.scheme = scheme:lower()
  elseif path:match("^[^/]*:") then
    return bad("first path segment", path:match("^[^/]*"))  -- section 4.2: would read as a scheme
  end
  if authority then
    local hostport = authority
    local userinfo = authority:match("^(.*)@")
    if userinfo then
      if not valid(userinfo, "userinfo") then return bad("userinfo", userinfo) end
      t.userinfo = userinfo
      hostport = authority:sub(#userinfo + 2)
    end
    local host, port
    if hostport:sub(1, 1) == "[" then
      host, port = hostport:match("^(%b[])(.*)$")
      if not host then return bad("host", hostport) end
    else
      host, port = hostport:match("^([^:]*)(.*)$")
    end
    if port ~= "" then
      local digits = port:match("^:(%d*)$")
      if not digits then return bad("port", port) end
      if digits ~= "" then
        local n = tonumber(digits)
        if #digits > 5 or n > 65535 then return bad("port", port) end
        t.port = math.tointeger(n)
      end
    end
    if not valid_host(host) then return bad("host", host) end
    t.host = host:lower()
  end
  if not valid(path, "path") then return bad("path", path) end
  if query and not valid(query, "query") then return bad("query", query) end
  if fragment and not valid(fragment, "query") then return bad("fragment", fragment) end
  return t
end

--- Section 5.3: the URI reference of components t (as url.parse returns them).
function url.format(t)
  check.type(t, "table", 1, "format")
  local field = check.field
  local scheme, userinfo = field(t, "scheme", "string", 1, "format"), field(t, "userinfo", "string", 1, "format")
  local host, query = field(t, "host", "string", 1, "format"), field(t, "query", "string", 1, "format")
  local fragment, port = field(t, "fragment", "string", 1, "format"), field(t, "port", "integer", 1, "format")
  local path = field(t, "path", "string", 1, "format") or ""
  local authority
  if host then
    authority = (userinfo and userinfo .. "@" or "") .. host .. (port and ":" .. port or "")
    if path ~= "" and path:sub(1, 1) ~= "/" then path = "/" .. path end
  elseif userinfo or port then
    check.arg(false, 1, "format", "userinfo or port without host")
  else
    -- Sections 3.3 and 4.2: keep "//x" from reading as an authority and "a:b" as a scheme.
    if path:sub(1, 2) == "//" then path = "/." .. path end
    if not scheme and path:match("^[^/]*:") then path = "./" .. path end
  end
  return recompose(scheme, authority, path, query, fragment)
end

return url
