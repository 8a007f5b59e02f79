-- netcat3 as gopl's exercise 8.3 asks (not in the seed): at the end of stdin only the write
-- half is closed, so the server's last echoes still arrive; the program ends when the server
-- closes the connection. examples/netcat3.lua is the seed's version, which closes it all.
-- Usage: lua5.4 examples/netcat3_halfclose.lua [host:port]   (default localhost:8000)
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
local f = require("flags").new("netcat3_halfclose.lua [ADDR]", "a TCP client, half-closing at the end of input")
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
conn:close_write()
done:recv()  -- wait for background goroutine to finish
conn:close()
