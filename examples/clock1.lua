-- Seed 1.3.1, clock1: a TCP server that writes the time every second, one client at a time
-- (the next client waits until the current one disconnects).
-- Usage: lua5.4 examples/clock1.lua [host:port] [interval]   (default localhost:8000, 1 s)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("clock1.lua [ADDR] [INTERVAL]", "the sequential clock server (seed)")
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
    handle_conn(conn)  -- handle one connection at a time
  end
end
