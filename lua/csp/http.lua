-- csp.http: the HTTP client. libcurl does the protocol (csrc/http.c, on the scheduler's loop);
-- this checks arguments, turns options into the C request's fields, drives its events (sink
-- pieces, upload body pieces, a context's cancel) and words errors as Go does.
--
-- request{method=, url=, headers=, body=, timeout=, max_body=, follow=, ctx=, insecure=,
--         cainfo=, http_version=, sink=} -> {status=, reason=, headers=, body=, url=, proto=
--         [, trailers=]} or nil, err, code
-- get(url [, opts]), post(url, content_type, body [, opts]): shorthands.
-- close_idle() closes the pooled connections; idle_count() counts the open ones.
return function(csp)
  local C = csp.http   -- the core's part: _new, close_idle, idle_count
  local M = { close_idle = C.close_idle, idle_count = C.idle_count }

  local MAX_BODY = 64 * 1024 * 1024   -- default body limit (Go has none; a crawler needs one)
  local MAX_REDIRECTS = 10

  local lower_mt = {
    __index = function(t, k)
      if type(k) == "string" then return rawget(t, k:lower()) end
    end,
  }

  local function bad_arg(fname, n, msg)
    error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 4)
  end

  local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

  -- Headers table -> array of "Name: value" lines (a table value sends the header repeatedly).
  local function header_lines(fname, n, h, out)
    if type(h) ~= "table" then bad_arg(fname, n, "opts.headers must be a table") end
    for k, v in pairs(h) do
      if type(k) ~= "string" or not k:match(TOKEN) then
        bad_arg(fname, n, "invalid header name " .. tostring(k))
      end
      local vs = type(v) == "table" and v or { v }
      for _, x in ipairs(vs) do
        if type(x) ~= "string" and type(x) ~= "number" or tostring(x):find("[\r\n%z]") then
          bad_arg(fname, n, "invalid value for header " .. k)
        end
        local s = tostring(x)
        -- "Name;" is curl's way of sending a header with an empty value
        out[#out + 1] = s == "" and k .. ";" or k .. ": " .. s
      end
    end
    return out
  end

  local function check_num(fname, n, o, k, pred, what)
    local v = o[k]
    if v ~= nil and not (type(v) == "number" and pred(v)) then
      bad_arg(fname, n, ("opts.%s must be %s"):format(k, what))
    end
    return v
  end

  local function pos(v) return v > 0 and v == v end
  local function nonneg_int(v) return v >= 0 and v == math.floor(v) and v < 2 ^ 62 end

  -- Go's Client error prefix: `Get "url": `.
  local function op_name(method)
    return method:sub(1, 1):upper() .. method:sub(2):lower()
  end

  -- Refuses, as Go does, URLs no request can be made for (before curl sees them).
  local function url_error(u)
    local scheme, rest = u:match("^(%a[%w+.%-]*):(.*)$")
    if not scheme then return 'unsupported protocol scheme ""' end
    scheme = scheme:lower()
    if scheme ~= "http" and scheme ~= "https" then
      return ('unsupported protocol scheme "%s"'):format(scheme)
    end
    local auth = rest:match("^//([^/?#]*)")
    if not auth then return "http: no Host in request URL" end
    auth = auth:gsub("^.*@", "")
    local host, port = auth:match("^(%[[^%]]*%])(.*)$")
    if not host then host, port = auth:match("^([^:]*)(.*)$") end
    if host == "" then return "http: no Host in request URL" end
    if port ~= "" and port ~= ":" then
      local p = port:match("^:(%d+)$")
      if not p or tonumber(p) > 65535 then
        return ('invalid port "%s" after host'):format(port)
      end
    end
    if u:find("[%s%c]") then return "invalid character in URL" end
  end

  -- A body given as a function (returns the next piece, nil at the end) or as a stream/reader
  -- (anything with :read(n) returning nil at its end).
  local function producer(body)
    if type(body) == "function" then return body end
    return function()
      local s = body:read(65536)
      return s
    end
  end

  -- Go's crypto/x509 on Linux: $SSL_CERT_FILE replaces the default CA file, and one it cannot
  -- read is skipped (the directories still count); $SSL_CERT_DIR replaces the directories.
  local cert_ok = {}
  local function cert_file()
    local f = os.getenv("SSL_CERT_FILE")
    if f == nil or f == "" then return nil end
    if cert_ok[f] == nil then
      local h = io.open(f, "r")
      cert_ok[f] = h ~= nil
      if h then h:close() end
    end
    return cert_ok[f] and f or nil
  end

  local function do_request(fname, n, o)
    if type(o) ~= "table" then bad_arg(fname, n, "table expected, got " .. type(o)) end
    local url = o.url
    if type(url) ~= "string" then bad_arg(fname, n, "url must be a string") end
    local method = o.method or "GET"
    if type(method) ~= "string" or not method:match(TOKEN) then
      bad_arg(fname, n, "method must be an HTTP method name")
    end
    method = method:upper()
    local timeout = check_num(fname, n, o, "timeout", pos, "a positive number")
    local max_body = o.max_body
    if max_body ~= false then
      check_num(fname, n, o, "max_body", nonneg_int, "a non-negative integer or false")
    end
    local follow = o.follow
    if follow == false then follow = 0 end
    if follow ~= nil then
      check_num(fname, n, { follow = follow }, "follow", nonneg_int, "a non-negative integer or false")
    end
    local lines = {}
    if o.headers ~= nil then header_lines(fname, n, o.headers, lines) end
    local body, stream = o.body, false
    if body ~= nil and type(body) ~= "string" then
      local mt = getmetatable(body)
      local readable = type(body) == "function" or
        ((type(body) == "table" or type(body) == "userdata") and type(body.read) == "function") or
        (mt and type(mt.__index) == "table" and type(mt.__index.read) == "function")
      if not readable then
        bad_arg(fname, n, "opts.body must be a string, a function or a reader")
      end
      stream = true
    end
    local sink = o.sink
    if sink ~= nil and type(sink) ~= "function" then bad_arg(fname, n, "opts.sink must be a function") end
    for _, k in ipairs { "cainfo", "http_version" } do
      if o[k] ~= nil and type(o[k]) ~= "string" then bad_arg(fname, n, ("opts.%s must be a string"):format(k)) end
    end
    if o.http_version ~= nil and o.http_version ~= "1.1" and o.http_version ~= "2" then
      bad_arg(fname, n, 'opts.http_version must be "1.1" or "2"')
    end
    local ctx = o.ctx
    if ctx ~= nil and (type(ctx) ~= "table" or type(ctx.done) ~= "function") then
      bad_arg(fname, n, "opts.ctx must be a context")
    end

    local op = op_name(method)
    local function fail(u, err, code) return nil, ('%s "%s": %s'):format(op, u, err), code end
    local uerr = url_error(url)
    if uerr then return fail(url, uerr) end
    if ctx and ctx:err() then return fail(url, ctx:err(), "ECANCELED") end

    local decode = true
    for _, l in ipairs(lines) do
      if l:lower():find("^accept%-encoding[:;]") then decode = false end   -- the caller decodes
    end
    if max_body == nil then max_body = not sink and MAX_BODY or nil end
    if max_body == false then max_body = nil end
    local env_file, env_dir = cert_file(), os.getenv("SSL_CERT_DIR")
    local req = C._new {
      method = method, url = url, headers = lines, body = not stream and body or nil,
      stream = stream,
      -- a huge timeout (math.huge, 1e308, 2^53 s) means none, as for every other deadline
      timeout_ms = timeout and timeout < 2 ^ 40 and math.max(1, math.ceil(timeout * 1000)) or nil,
      max_body = max_body, follow = follow or MAX_REDIRECTS, insecure = o.insecure and true,
      cainfo = o.cainfo or env_file,
      capath = not o.cainfo and env_dir ~= "" and env_dir or nil,
      http_version = o.http_version, sink = sink ~= nil, decode = decode,
    }
    -- Whatever way this call ends (an error in sink or body included), the transfer stops.
    local finished = ctx and csp.chan()
    local _ <close> = csp.defer(function()
      req:cancel()
      if finished then finished:close() end
    end)
    local cancel_err
    if ctx then
      local done = ctx:done()
      csp._go_internal(function()
        if csp.select { csp.recv(done), csp.recv(finished) } == 1 then
          cancel_err = ctx:err()
          req:cancel()
        end
      end)
    end
    local next_piece = stream and producer(body)
    while true do
      local ev, chunk = req:wait()
      if ev == "done" then break end
      if ev == "data" then
        sink(chunk)
      else   -- "need"
        local piece = next_piece()
        if piece ~= nil and type(piece) ~= "string" then
          error(("http: body producer returned a %s"):format(type(piece)), 3)
        end
        req:feed(piece)
      end
    end
    local r, err, code, at = req:result()
    if not r then
      if cancel_err then return fail(url, cancel_err, "ECANCELED") end
      if code == "ELOOP" then
        return fail(at, ("stopped after %d redirects"):format(follow or MAX_REDIRECTS), code)
      end
      return fail(at or url, err, code)
    end
    setmetatable(r.headers, lower_mt)
    if r.trailers then setmetatable(r.trailers, lower_mt) end
    if r.url == "" or r.url == url:gsub("#.*$", "") then r.url = url end
    return r
  end

  function M.request(o) return do_request("request", 1, o) end

  local function with(opts, fname, n, extra)
    if opts ~= nil and type(opts) ~= "table" then bad_arg(fname, n, "table expected, got " .. type(opts)) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end

  function M.get(url, opts)
    if type(url) ~= "string" then bad_arg("get", 1, "string expected, got " .. type(url)) end
    return do_request("get", 2, with(opts, "get", 2, { url = url, method = "GET" }))
  end

  function M.post(url, content_type, body, opts)
    if type(url) ~= "string" then bad_arg("post", 1, "string expected, got " .. type(url)) end
    if type(content_type) ~= "string" then
      bad_arg("post", 2, "string expected, got " .. type(content_type))
    end
    if body ~= nil and type(body) ~= "string" and type(body) ~= "function" and
       not ((type(body) == "table" or type(body) == "userdata") and type(body.read) == "function") then
      bad_arg("post", 3, "string, function or reader expected, got " .. type(body))
    end
    local o = with(opts, "post", 4, { url = url, method = "POST", body = body })
    local h = {}
    for k, v in pairs(o.headers or {}) do h[k] = v end
    h["Content-Type"] = content_type
    o.headers = h
    return do_request("post", 4, o)
  end

  return M
end
