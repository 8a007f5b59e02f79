-- Seed 1.3.1, netcat1: a read-only TCP client: copies what the server sends to stdout.
-- Usage: lua5.4 examples/netcat1.lua [host:port]   (default localhost:8000)
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
local f = require("flags").new("netcat1.lua [ADDR]", "a read-only TCP client")
f:arg("addr", "string", "localhost:8000", "host:port to connect to")
local opts = f:parse(arg)

local conn, err = csp.net.dial("tcp", opts.addr)
if not conn then fatal(err) end
local _ <close> = conn  -- defer conn.Close()
must_copy(csp.stdout, conn)
