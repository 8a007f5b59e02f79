-- Seed 1.11 / gopl 8.4.1, netcat3: main waits for the background copy on a done channel. At
-- the end of stdin only the write half is closed (exercise 8.3), so the server's last echoes
-- still arrive; the program ends when the server closes the connection.
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

local conn, err = csp.net.dial("tcp", arg[1] or "localhost:8000")
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
