-- Seed 1.5.1 / gopl 8.4.1, netcat3: at the end of stdin main closes the connection, then waits
-- for the background copy on a done channel before it exits. The close ends that copy (its
-- error ignored, as in Go), so echoes the server has not sent yet are lost:
-- examples/netcat3_halfclose.lua closes only the write half and gets them.
-- Usage: lua5.4 examples/netcat3.lua [host:port]   (default localhost:8000)
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
local f = require("flags").new("netcat3.lua [ADDR]", "a TCP client that waits for its reader to finish")
f:arg("addr", "string", "localhost:8000", "host:port to connect to")
local opts = f:parse(arg)

local conn, err = csp.net.dial("tcp", opts.addr)
if not conn then fatal(err) end
local done = csp.chan()
csp.go(function()
  csp.io.copy(csp.stdout, conn)  -- NOTE: ignoring errors
  io.stderr:write("done\n")
  done:send(true)  -- signal the main goroutine
end)
must_copy(conn, csp.stdin)
conn:close()
done:recv()  -- wait for background goroutine to finish
