-- Seed 1.4.2, netcat2: a goroutine copies the server's output to stdout while main copies
-- stdin to the server; the end of stdin closes the connection (echoes still due are lost).
-- Usage: lua5.4 examples/netcat2.lua [host:port]   (default localhost:8000)
local csp = require "csp"

local function fatal(err)
  io.stderr:write(err, "\n")
  os.exit(1)
end

local function must_copy(dst, src)
  local _, err = csp.io.copy(dst, src)
  if err then fatal(err) end
end

local conn, err = csp.net.dial("tcp", arg[1] or "localhost:8000")
if not conn then fatal(err) end
local _ <close> = conn  -- defer conn.Close()
csp.go(function()
  csp.io.copy(csp.stdout, conn)  -- ends with an error once main closes conn: ignored
end)
must_copy(conn, csp.stdin)
