-- The csp TCP echo server of the echo benchmark: a goroutine per connection echoes each line,
-- in blocking style.
-- Usage: lua5.4 bench/echo/echo.lua [host:port]
local csp = require "csp"

-- Generational collection: each request leaves one dead string (its line, 63 bytes: a long
-- string, malloc'd) and nothing else; a minor collection frees those without retracing the
-- parked connections' goroutines that each incremental cycle marks again (callgrind, 100 conns,
-- 64-byte lines: ~2,630 -> ~2,570 instructions per request, three paired runs).
collectgarbage("generational")

local ln = assert(csp.net.listen("tcp", arg[1] or "127.0.0.1:8000"))
while true do
  local c = ln:accept()
  if c then
    csp.go(function()
      for line in c:lines() do
        if not c:write(line, "\n") then break end
      end
      c:close()
    end)
  end
end
