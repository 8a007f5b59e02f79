-- csp.http: the HTTP client. libcurl does the protocol (csrc/http*.c, on the scheduler's loop);
-- this checks arguments, turns headers into lines, drives a request's events (sink pieces,
-- upload body pieces, a context's cancel) and prefixes errors as Go's Client does.
--
-- request{method=, url=, headers=, body=, timeout=, max_body=, follow=, ctx=, insecure=,
--         cainfo=, http_version=, sink=, stream=} -> {status=, reason=, headers=, body= or
--         body_reader=, url=, proto= [, trailers=]} or nil, err, code
-- get(url [, opts]), post(url, content_type, body [, opts]): shorthands.
-- close_idle() closes the pooled connections; idle_count() counts the open ones.
--
-- A plain module over csp.core; init.lua installs it as csp.http.
local core = require "csp.core"
local check = require "csp.check"

local C = core.http   -- _new, close_idle, idle_count and _new's flags
local new, PRODUCER, SINK, DECODE, READER = C._new, C.PRODUCER, C.SINK, C.DECODE, C.READER
local chan, select, recv = core.chan, core.select, core.recv
local go = core._go_internal or core.go   -- a context's watcher: csp's own goroutine
local mtype, type, pairs, ipairs, tostring = math.type, type, pairs, ipairs, tostring

local http = { close_idle = C.close_idle, idle_count = C.idle_count }

local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

-- Go's Client error prefix, `Get "url": `, by method.
local OPS = setmetatable({}, { __index = function(t, m)
  local op = m:sub(1, 1):upper() .. m:sub(2):lower()
  t[m] = op
  return op
end })

-- Messages as check.lua words them for a field of an option table.
local function field_error(k, msg) return ("field '%s': %s"):format(k, msg) end

-- Headers table -> array of "Name: value" lines (a table value sends the header repeatedly),
-- and whether the caller set Accept-Encoding (then curl decodes nothing); or nil, message.
local function header_lines(h)
  if type(h) ~= "table" then return nil, field_error("headers", "table expected, got " .. check.typename(h)) end
  local out, own_encoding = {}, false
  for k, v in pairs(h) do
    if type(k) ~= "string" or not k:match(TOKEN) then
      return nil, field_error("headers", "invalid header name " .. tostring(k))
    end
    if k:lower() == "accept-encoding" then own_encoding = true end
    local vs = type(v) == "table" and v or { v }
    for _, x in ipairs(vs) do
      if type(x) ~= "string" and type(x) ~= "number" or tostring(x):find("[\r\n%z]") then
        return nil, field_error("headers", "invalid value for header " .. k)
      end
      local s = tostring(x)
      -- "Name;" is curl's way of sending a header with an empty value
      out[#out + 1] = s == "" and k .. ";" or k .. ": " .. s
    end
  end
  return out, own_encoding
end

local function readable(v)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return false end
  local ok, m = pcall(function() return v.read end)
  return ok and type(m) == "function"
end

-- A body given as a function (returns the next piece, nil at the end) or as a reader (anything
-- with :read(n) returning nil at its end).
local function producer(body)
  if type(body) == "function" then return body end
  return function() return (body:read(65536)) end
end

local function nonneg_int(v) return mtype(v) == "integer" and v >= 0 end

-- What is wrong with request options o (check.lua's wording), or nil.
local function opts_error(o)
  local url, method = o.url, o.method
  if type(url) ~= "string" then return field_error("url", "string expected, got " .. check.typename(url)) end
  if method ~= nil and (type(method) ~= "string" or not method:match(TOKEN)) then
    return field_error("method", "HTTP method name expected")
  end
  local v = o.timeout
  if v ~= nil and not (type(v) == "number" and v > 0) then
    return field_error("timeout", "positive number expected")
  end
  v = o.max_body
  if v ~= nil and v ~= false and not nonneg_int(v) then
    return field_error("max_body", "non-negative integer or false expected")
  end
  v = o.follow
  if v ~= nil and v ~= false and not nonneg_int(v) then
    return field_error("follow", "non-negative integer or false expected")
  end
  v = o.cainfo
  if v ~= nil and type(v) ~= "string" then
    return field_error("cainfo", "string expected, got " .. check.typename(v))
  end
  v = o.http_version
  if v ~= nil and v ~= "1.1" and v ~= "2" then return field_error("http_version", '"1.1" or "2" expected') end
  v = o.sink
  if v ~= nil and type(v) ~= "function" then
    return field_error("sink", "function expected, got " .. check.typename(v))
  end
  if o.stream and v then return field_error("stream", "a body reader and a sink exclude each other") end
  v = o.ctx
  if v ~= nil and (type(v) ~= "table" or type(v.done) ~= "function") then
    return field_error("ctx", "context expected")
  end
  v = o.body
  if v ~= nil and type(v) ~= "string" and type(v) ~= "function" and not readable(v) then
    return field_error("body", "string, function or reader expected, got " .. check.typename(v))
  end
end

-- A context's watcher: cancels req when ctx is done first. Closing the returned value (the
-- request's scope ending) stops it, unless a body reader keeps the transfer going: then the
-- end of the transfer (or the reader's close) stops it.
local watch_mt = { __close = function(w)
  if w.reader then
    go(function()
      w.req:wait()
      w.finished:close()
    end)
  else
    w.finished:close()
  end
end }

local function watch(ctx, req)
  local w = setmetatable({ req = req, finished = chan() }, watch_mt)
  local done = ctx:done()
  go(function()
    if select { recv(done), recv(w.finished) } == 1 then req:cancel(tostring(ctx:err())) end
  end)
  return w
end

-- The request, once its options passed: lines are the header lines (or nil).
local function do_request(o, lines, own_encoding)
  local url, method, sink, body, ctx = o.url, (o.method or "GET"):upper(), o.sink, o.body, o.ctx
  local streamed = body ~= nil and type(body) ~= "string"
  local flags = (streamed and PRODUCER or 0) | (sink and SINK or 0) |
    (own_encoding and 0 or DECODE) | (o.stream and READER or 0)
  if ctx and ctx:err() then return nil, ('%s "%s": %s'):format(OPS[method], url, ctx:err()), "ECANCELED" end

  local req <close>, uerr, ucode, whole = new(o, method, url, lines, flags)
  if not req then  -- Go's Get returns url.Parse's error as it is (whole), the rest prefixed
    return nil, whole and uerr or ('%s "%s": %s'):format(OPS[method], url, uerr), ucode
  end
  local w <close> = ctx and watch(ctx, req) or nil
  local next_piece = streamed and producer(body)
  local ev, chunk = req:wait()
  while ev ~= "done" do
    if ev == "data" then
      sink(chunk)
    else   -- "need"
      local piece = next_piece()
      if piece ~= nil and type(piece) ~= "string" then
        error(("http: body producer returned a %s"):format(type(piece)), 3)
      end
      req:feed(piece)
    end
    ev, chunk = req:wait()
  end
  local r, err, code, at = req:result(url)
  if not r then return nil, ('%s "%s": %s'):format(OPS[method], at or url, err), code end
  if w and r.body_reader then w.reader = true end
  return r
end

-- Checks options o: nil, header lines (or nil), whether Accept-Encoding is the caller's; or
-- what is wrong (for check.arg).
local function prepare(o)
  local msg = opts_error(o)
  if msg ~= nil or o.headers == nil then return msg, nil, false end
  local lines, own = header_lines(o.headers)
  if not lines then return own end
  return nil, lines, own
end

--- One HTTP exchange (README "HTTP, HTML and URLs").
function http.request(o)
  check.type(o, "table", 1, "request")
  local msg, lines, own = prepare(o)
  check.arg(msg == nil, 1, "request", msg)
  return do_request(o, lines, own)
end

-- A copy of opts with extra's fields.
local function with(opts, extra)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  return o
end

function http.get(url, opts)
  check.type(url, "string", 1, "get")
  if opts == nil then return do_request({ url = url }, nil, false) end
  local o = with(check.opts(opts, 2, "get"), { url = url, method = "GET" })
  local msg, lines, own = prepare(o)
  check.arg(msg == nil, 2, "get", msg)
  return do_request(o, lines, own)
end

function http.post(url, content_type, body, opts)
  check.type(url, "string", 1, "post")
  check.type(content_type, "string", 2, "post")
  check.arg(body == nil or type(body) == "string" or type(body) == "function" or readable(body), 3, "post",
    "string, function or reader expected, got " .. check.typename(body))
  local o = with(check.opts(opts, 4, "post"), { url = url, method = "POST", body = body })
  local h = {}
  for k, v in pairs(o.headers or {}) do h[k] = v end
  h["Content-Type"] = content_type
  o.headers = h
  local msg, lines, own = prepare(o)
  check.arg(msg == nil, 4, "post", msg)
  return do_request(o, lines, own)
end

return http
