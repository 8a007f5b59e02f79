-- Seed 1.3.2, clock2: clock1 with a goroutine per connection, so clients are served at once.
-- Usage: lua5.4 examples/clock2.lua [host:port] [interval]   (default localhost:8000, 1 s)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("clock2.lua [ADDR] [INTERVAL]", "the concurrent clock server (seed)")
f:arg("addr", "string", "localhost:8000", "host:port to listen on")
f:arg("interval", "number", 1, "seconds between two times", { positive = true })
local opts = f:parse(arg)
local addr, interval = opts.addr, opts.interval

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
