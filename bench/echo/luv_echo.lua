-- The raw luv (libuv callbacks) twin of bench/echo/echo.lua: no coroutines, each connection's
-- read callback splits lines and writes each back. Needs lua-luv (Debian package lua-luv).
-- Usage: lua5.4 bench/echo/luv_echo.lua [host:port]
local uv = require "luv"

local host, port = (arg[1] or "127.0.0.1:8000"):match("^(.*):(%d+)$")
local server = uv.new_tcp()
assert(server:bind(host, tonumber(port)))
assert(server:listen(4096, function(err)
  assert(not err, err)
  local c = uv.new_tcp()
  server:accept(c)
  c:nodelay(true)
  local pending = ""
  c:read_start(function(rerr, data)
    if rerr or not data then
      c:close()
      return
    end
    pending = pending .. data
    local start = 1
    while true do
      local nl = pending:find("\n", start, true)
      if not nl then break end
      c:write(pending:sub(start, nl))
      start = nl + 1
    end
    pending = pending:sub(start)
  end)
end))
uv.run()
