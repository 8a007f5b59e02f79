-- A small programmable HTTP/1.1 server on 127.0.0.1 written with csp.net, for the http specs.
--
--   local srv = httpd.start(function(req, c, srv) ... end)
--   srv.url ("http://127.0.0.1:PORT"), srv.accepted (connections), srv.requests, srv:close()
--
-- The handler gets req = {method=, target=, path=, headers= (lowercased), raw= (request head
-- text), n= (request number on this connection)} and the connection, and writes the response
-- itself (raw bytes or with the helpers below). It returns "close" to close the connection;
-- otherwise the next request is read from it. srv.closing is closed by srv:close(), so a handler
-- that stalls by receiving from it ends with the server; srv:close() also closes every
-- connection, so no goroutine of the server outlives it.
local csp = require "csp"

local M = {}

local REASON = { [200] = "OK", [204] = "No Content", [301] = "Moved Permanently", [302] = "Found",
                 [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
                 [308] = "Permanent Redirect", [404] = "Not Found", [500] = "Internal Server Error" }

local function head(status, headers)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASON[status] or "Status") }
  for _, kv in ipairs(headers or {}) do out[#out + 1] = kv[1] .. ": " .. kv[2] .. "\r\n" end
  out[#out + 1] = "\r\n"
  return table.concat(out)
end

-- A response framed by Content-Length; headers is an array of {name, value}.
function M.reply(c, status, body, headers)
  body = body or ""
  local h = { { "Content-Length", tostring(#body) } }
  for _, kv in ipairs(headers or {}) do h[#h + 1] = kv end
  return c:write(head(status, h) .. body)
end

-- A chunked response: chunks is an array of strings (empty ones are skipped, since an empty
-- chunk would end the body), trailers an array of {name, value}.
function M.chunked(c, status, chunks, trailers, headers)
  local h = { { "Transfer-Encoding", "chunked" } }
  for _, kv in ipairs(headers or {}) do h[#h + 1] = kv end
  local out = { head(status, h) }
  for _, s in ipairs(chunks) do
    if #s > 0 then out[#out + 1] = ("%x\r\n%s\r\n"):format(#s, s) end
  end
  out[#out + 1] = "0\r\n"
  for _, kv in ipairs(trailers or {}) do out[#out + 1] = kv[1] .. ": " .. kv[2] .. "\r\n" end
  out[#out + 1] = "\r\n"
  return c:write(table.concat(out))
end

-- A redirect to location (relative or absolute), with a small body.
function M.redirect(c, status, location)
  return M.reply(c, status, "moved\n", { { "Location", location } })
end

local function read_request(c)
  local line = c:read_line()
  if not line then return nil end
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.%d$")
  if not method then return nil end
  local raw, h = { line }, {}
  while true do
    local l = c:read_line()
    if not l then return nil end
    if l == "" then break end
    raw[#raw + 1] = l
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    if k then h[k:lower()] = v end
  end
  -- The request body: by Content-Length, or chunked (no trailers).
  local body = {}
  if h["content-length"] then
    local n = tonumber(h["content-length"])
    while n > 0 do
      local s = c:read(n)
      if not s then return nil end
      body[#body + 1] = s
      n = n - #s
    end
  elseif (h["transfer-encoding"] or ""):lower() == "chunked" then
    while true do
      local size = tonumber((c:read_line() or ""):match("^%x+") or "", 16)
      if not size then return nil end
      if size == 0 then c:read_line() break end
      while size > 0 do
        local s = c:read(size)
        if not s then return nil end
        body[#body + 1] = s
        size = size - #s
      end
      c:read_line()
    end
  end
  return { method = method, target = target, path = target:match("^[^?]*"), headers = h,
           raw = table.concat(raw, "\n"), body = table.concat(body) }
end

function M.start(handler)
  local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
  local srv = { addr = ln:addr(), accepted = 0, requests = 0, conns = {}, closing = csp.chan() }
  srv.url = "http://" .. srv.addr

  local function serve(c)
    local n = 0
    while true do
      local req = read_request(c)
      if not req then break end
      n = n + 1
      req.n = n
      srv.requests = srv.requests + 1
      if handler(req, c, srv) == "close" then break end
    end
    c:close()
    srv.conns[c] = nil
  end

  csp.go(function()
    while true do
      local c = ln:accept()
      if not c then return end
      srv.accepted = srv.accepted + 1
      srv.conns[c] = true
      csp.go(serve, c)
    end
  end)

  function srv.close()
    ln:close()
    srv.closing:close()
    for c in pairs(srv.conns) do c:close() end
    -- let the server's goroutines see their closed handles and end
    csp.gosched()
  end

  return srv
end

-- For a describe block whose tests start servers, given busted's after_each (a spec file's,
-- not a global): returns start(handler), httpd.start that also has after_each close the last
-- server started and drop csp.http's idle connections: no test meets another's leftovers.
function M.each_test(after_each)
  local srv
  after_each(function()
    if srv then srv:close() end
    srv = nil
    csp.http.close_idle()
  end)
  return function(handler)
    srv = M.start(handler)
    return srv
  end
end

return M
