-- Seed 1.3.2, clock2: clock1 with a goroutine per connection, so clients are served at once.
-- Usage: lua5.4 examples/clock2.lua [host:port] [interval]   (default localhost:8000, 1 s)
local csp = require "csp"

local addr = arg[1] or "localhost:8000"
local interval = tonumber(arg[2]) or 1

local function handle_conn(c)
  local _ <close> = c  -- defer c.Close()
  while true do
    if not c:write(os.date("%H:%M:%S\n")) then
      return  -- e.g., client disconnected
    end
    csp.sleep(interval)
  end
end

local listener, err = csp.net.listen("tcp", addr)
if not listener then
  io.stderr:write(err, "\n")
  os.exit(1)
end
while true do
  local conn, aerr = listener:accept()
  if not conn then
    io.stderr:write(aerr, "\n")  -- e.g., connection aborted
  else
    csp.go(handle_conn, conn)  -- handle connections concurrently
  end
end
