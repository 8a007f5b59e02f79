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

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("netcat2.lua [ADDR]", "a TCP client")
f:arg("addr", "string", "localhost:8000", "host:port to connect to")
local opts = f:parse(arg)

local conn, err = csp.net.dial("tcp", opts.addr)
if not conn then fatal(err) end
local _ <close> = conn  -- defer conn.Close()
csp.go(function()
  csp.io.copy(csp.stdout, conn)  -- ends with an error once main closes conn: ignored
end)
must_copy(conn, csp.stdin)
