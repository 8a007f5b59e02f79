-- csp.http: HTTP/1.1 GET client over csp.net.
--
-- get(url [, opts]) -> {status=, reason=, headers=, body=, url=final_url [, trailers=]}
--                      or nil, err [, code]
-- Header names are stored lowercased ("content-type"); the headers and trailers tables also
-- answer any other spelling (headers["Content-Type"]) through their metatable. A repeated header
-- is joined with ", " (RFC 9110 5.3). opts: headers (extra request headers), timeout (seconds,
-- covering connect, request, headers and body of the whole redirect chain, like Go's
-- Client.Timeout), max_body (bytes; a larger body is an error and is not read further).
-- close_idle() closes the pooled keep-alive connections (Go's CloseIdleConnections).
-- idle_count() is the number of pooled idle connections (at most 4 per host:port, 64 in all).
return function(csp)
  local M = {}

  local MAX_HEADER = 64 * 1024    -- header section (and trailer section) limit, bytes
  local MAX_REDIRECTS = 10
  local PER_HOST, TOTAL = 4, 64   -- idle keep-alive connections kept
  local CHUNK = 64 * 1024         -- largest single read, so memory follows max_body

  -- Idle pool: idle[host:port] = array of connections, most recent last. Lua code between
  -- blocking calls is atomic, so taking and returning need no lock.
  local idle, nidle = {}, 0

  local function take(key)
    local list = idle[key]
    if list and #list > 0 then
      nidle = nidle - 1
      return table.remove(list)
    end
  end

  local function put(key, c)
    local list = idle[key]
    if not list then list = {}; idle[key] = list end
    if #list >= PER_HOST or nidle >= TOTAL then c:close(); return end
    c:set_deadline(nil)
    list[#list + 1] = c
    nidle = nidle + 1
  end

  function M.close_idle()
    for key, list in pairs(idle) do
      for _, c in ipairs(list) do c:close() end
      idle[key] = nil
    end
    nidle = 0
  end

  function M.idle_count() return nidle end

  local lower_mt = {
    __index = function(t, k)
      if type(k) == "string" then return rawget(t, k:lower()) end
    end,
  }

  -- "http://host[:port]/path?query#frag" -> {host=, port=, hostport=, key=, target=} or nil, err
  local function split(u)
    local scheme, rest = u:match("^(%a[%w+.%-]*):(.*)$")
    if not scheme then return nil, 'unsupported protocol scheme ""' end
    scheme = scheme:lower()
    if scheme == "https" then return nil, "https is not supported" end
    if scheme ~= "http" then return nil, ('unsupported protocol scheme "%s"'):format(scheme) end
    local auth, tail = rest:match("^//([^/?#]*)(.*)$")
    if not auth then return nil, "http: no Host in request URL" end
    auth = auth:gsub("^.*@", "")   -- userinfo is not sent
    local host, port = auth:match("^(%[[^%]]*%])(.*)$")
    if not host then host, port = auth:match("^([^:]*)(.*)$") end
    if host == "" then return nil, "http: no Host in request URL" end
    if port == "" or port == ":" then
      port = "80"
    else
      port = port:match("^:(%d+)$")
      if not port or tonumber(port) > 65535 then
        return nil, ('invalid port "%s" after host'):format(auth:sub(#host + 1))
      end
    end
    local target = tail:gsub("#.*$", "")
    if target:find("[%s%c]") then return nil, "invalid character in URL path" end
    if target == "" or target:sub(1, 1) == "?" then target = "/" .. target end
    return { host = auth, target = target, key = host .. ":" .. port }
  end

  local function bad_arg(n, msg) error(("bad argument #%d to 'get' (%s)"):format(n, msg), 3) end

  local function check_opts(opts)
    if opts == nil then return {} end
    if type(opts) ~= "table" then bad_arg(2, "table expected, got " .. type(opts)) end
    local t, m, h = opts.timeout, opts.max_body, opts.headers
    if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0) then
      bad_arg(2, "opts.timeout must be a positive number")
    end
    if m ~= nil and (type(m) ~= "number" or m < 0 or m ~= math.floor(m)) then
      bad_arg(2, "opts.max_body must be a non-negative integer")
    end
    if h ~= nil then
      if type(h) ~= "table" then bad_arg(2, "opts.headers must be a table") end
      for k, v in pairs(h) do
        if type(k) ~= "string" or not k:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
          bad_arg(2, "invalid header name " .. tostring(k))
        end
        if type(v) ~= "string" and type(v) ~= "number" or tostring(v):find("[\r\n%z]") then
          bad_arg(2, "invalid value for header " .. k)
        end
      end
    end
    return opts
  end

  local function request(u, extra)
    local hdr = { host = { "Host", u.host }, ["user-agent"] = { "User-Agent", "csp" },
                  connection = { "Connection", "keep-alive" } }
    local order = { "host", "user-agent", "connection" }
    for k, v in pairs(extra or {}) do
      local lk = k:lower()
      if not hdr[lk] then order[#order + 1] = lk end
      hdr[lk] = { k, tostring(v) }
    end
    local out = { "GET ", u.target, " HTTP/1.1\r\n" }
    for _, lk in ipairs(order) do
      out[#out + 1] = hdr[lk][1] .. ": " .. hdr[lk][2] .. "\r\n"
    end
    out[#out + 1] = "\r\n"
    return table.concat(out)
  end

  -- Reads exactly n bytes into parts.
  local function read_exact(c, n, parts)
    while n > 0 do
      local s, err, code = c:read(n < CHUNK and n or CHUNK)
      if not s then
        if err == "EOF" then return nil, "unexpected EOF" end
        return nil, err, code
      end
      parts[#parts + 1] = s
      n = n - #s
    end
    return true
  end

  local function eof(err) return err == "EOF" and "unexpected EOF" or err end

  -- Reads header lines until the empty line into a fresh table; `used` counts bytes already
  -- taken from the MAX_HEADER budget.
  local function read_fields(c, used, what)
    local h, last = setmetatable({}, lower_mt), nil
    while true do
      local line, err, code = c:read_line()
      if not line then
        if code == "ELINETOOLONG" then return nil, what .. " too large" end
        return nil, eof(err), code
      end
      used = used + #line + 2
      if used > MAX_HEADER then return nil, what .. " too large" end
      if line == "" then return h end
      if line:find("^[ \t]") and last then   -- obsolete line folding
        h[last] = h[last] .. " " .. line:match("^%s*(.-)%s*$")
      else
        local k, v = line:match("^([!#$%%&'*+%-.^_`|~%w]+):[ \t]*(.-)[ \t]*$")
        if not k then return nil, ("malformed MIME header line: %q"):format(line:sub(1, 60)) end
        k = k:lower()
        h[k] = h[k] and h[k] .. ", " .. v or v
        last = k
      end
    end
  end

  local function has_token(v, tok)
    if not v then return false end
    for t in v:gmatch("[^,%s]+") do
      if t:lower() == tok then return true end
    end
    return false
  end

  -- Reads one response. Returns resp, reusable; or nil, err, code, nothing_read.
  local function read_response(c, max_body)
    local line, err, code, status, maj, min, reason
    local used = 0
    repeat   -- 1xx informational responses precede the real one
      line, err, code = c:read_line()
      if not line then
        if code == "ELINETOOLONG" then return nil, "status line too long" end
        return nil, err, code, used == 0
      end
      used = used + #line + 2
      maj, min, status, reason = line:match("^HTTP/(%d)%.(%d) (%d%d%d)(.*)$")
      if not maj or not (reason == "" or reason:sub(1, 1) == " ") or maj ~= "1" then
        return nil, ("malformed HTTP response %q"):format(line:sub(1, 60))
      end
      status = tonumber(status)
      local h
      h, err, code = read_fields(c, used, "response header")
      if not h then return nil, err, code end
      if status == 101 then return nil, "unexpected 101 Switching Protocols" end
      if status >= 200 then
        local resp = { status = status, reason = reason:sub(2), headers = h,
                       proto = "HTTP/1." .. min }
        local reuse = (min == "1" and not has_token(h.connection, "close"))
          or (min == "0" and has_token(h.connection, "keep-alive"))
        local parts, te, cl = {}, h["transfer-encoding"], h["content-length"]
        if status == 204 or status == 304 then te, cl = nil, "0" end   -- no body by definition
        if te and te:lower():match("chunked%s*$") then
          local got = 0
          while true do
            line, err, code = c:read_line()
            if not line then return nil, eof(err), code end
            local hex = line:match("^(%x+)[ \t]*;") or line:match("^(%x+)[ \t]*$")
            if not hex or #hex > 15 then
              return nil, ("malformed chunk size %q"):format(line:sub(1, 40))
            end
            local n = tonumber(hex, 16)
            if n == 0 then break end
            got = got + n
            if max_body and got > max_body then
              return nil, ("http: response body too large (limit %d bytes)"):format(max_body)
            end
            local ok
            ok, err, code = read_exact(c, n, parts)
            if not ok then return nil, err, code end
            line, err, code = c:read_line()
            if line ~= "" then
              if not line then return nil, eof(err), code end
              return nil, "malformed chunked encoding (missing CRLF after chunk data)"
            end
          end
          local tr
          tr, err, code = read_fields(c, 0, "trailer section")
          if not tr then return nil, err, code end
          if next(tr) then resp.trailers = tr end
        elseif te or not cl then
          -- a coding we cannot frame, or no framing at all: the body ends with the connection
          reuse = false
          local got = 0
          while true do
            local s
            s, err, code = c:read(CHUNK)
            if not s then
              if err == "EOF" then break end
              return nil, err, code
            end
            got = got + #s
            if max_body and got > max_body then
              return nil, ("http: response body too large (limit %d bytes)"):format(max_body)
            end
            parts[#parts + 1] = s
          end
        else
          local first = cl:match("^%s*([^,]-)%s*$") or cl:match("^%s*([^,]-)%s*,")
          for v in cl:gmatch("[^,]+") do   -- repeated Content-Length must agree
            if v:match("^%s*(.-)%s*$") ~= first then
              return nil, ("http: message cannot contain multiple Content-Length headers; got %q")
                :format(cl)
            end
          end
          if not first:match("^%d+$") or #first > 15 then
            return nil, ("bad Content-Length %q"):format(cl)
          end
          local n = tonumber(first)
          if max_body and n > max_body then
            return nil, ("http: response body too large (limit %d bytes)"):format(max_body)
          end
          local ok
          ok, err, code = read_exact(c, n, parts)
          if not ok then return nil, err, code end
        end
        resp.body = table.concat(parts)
        return resp, reuse
      end
    until false
  end

  local function timeout_err(err, code, what)
    if code == "ETIMEDOUT" or err == "i/o timeout" then
      return ("i/o timeout (Client.Timeout exceeded %s)"):format(what), "ETIMEDOUT"
    end
    return err, code
  end

  -- One request/response exchange with keep-alive reuse; a reused connection that fails before
  -- any byte of the response arrived was closed by the server while idle: retry once, fresh.
  local function round_trip(u, opts, deadline)
    for attempt = 1, 2 do
      local c = attempt == 1 and take(u.key) or nil
      local reused = c ~= nil
      local err, code
      if not c then
        local dopts
        if deadline then
          local left = deadline - csp.now()
          if left <= 0 then return nil, timeout_err("i/o timeout", "ETIMEDOUT", "while dialing") end
          dopts = { timeout = left }
        end
        c, err, code = csp.net.dial("tcp", u.key, dopts)
        if not c then return nil, err, code end
      end
      if deadline then c:set_deadline(deadline) end
      local ok
      ok, err, code = c:write(request(u, opts.headers))
      if ok then
        local resp, reuse, nothing
        resp, reuse, code, nothing = read_response(c, opts.max_body)
        if resp then
          if reuse then put(u.key, c) else c:close() end
          return resp
        end
        err = reuse
        c:close()
        if not (reused and nothing and code ~= "ETIMEDOUT") then
          if nothing and err == "EOF" then return nil, "EOF", code end
          return nil, timeout_err(err, code, "awaiting response")
        end
      else
        c:close()
        if not reused or code == "ETIMEDOUT" then
          return nil, timeout_err(err, code, "writing request")
        end
      end
    end
  end

  local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
  local SENSITIVE = { authorization = true, cookie = true, ["www-authenticate"] = true }

  function M.get(url, opts)
    if type(url) ~= "string" then bad_arg(1, "string expected, got " .. type(url)) end
    opts = check_opts(opts)
    local deadline = opts.timeout and csp.now() + opts.timeout
    local headers = opts.headers
    local redirects = 0
    while true do
      local u, err = split(url)
      if not u then return nil, ('Get "%s": %s'):format(url, err) end
      local resp, code
      resp, err, code = round_trip(u, { headers = headers, max_body = opts.max_body }, deadline)
      if not resp then return nil, ('Get "%s": %s'):format(url, err), code end
      local loc = resp.headers.location
      if not (REDIRECT[resp.status] and loc) then
        resp.url = url
        return resp
      end
      local resolve = csp.url and csp.url.resolve
      if type(resolve) ~= "function" then
        return nil, ('Get "%s": redirect needs csp.url.resolve'):format(url)
      end
      local next_url = resolve(url, loc)
      if type(next_url) ~= "string" then
        return nil, ('Get "%s": failed to parse Location header %q'):format(url, loc)
      end
      if redirects == MAX_REDIRECTS then
        return nil, ('Get "%s": stopped after %d redirects'):format(next_url, MAX_REDIRECTS)
      end
      redirects = redirects + 1
      local nu = split(next_url)
      if headers and (not nu or nu.key ~= u.key) then   -- Go drops credentials across hosts
        local kept = {}
        for k, v in pairs(headers) do
          if not SENSITIVE[k:lower()] then kept[k] = v end
        end
        headers = kept
      end
      url = next_url
    end
  end

  return M
end
