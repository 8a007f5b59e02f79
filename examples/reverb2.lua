-- Seed 1.4.3, reverb2: reverb1 with `go echo(...)`: the echoes of successive shouts overlap.
-- As in Go, the connection is closed when the client's input ends, and echoes still due then
-- fail (their write errors are ignored).
-- Usage: lua5.4 examples/reverb2.lua [host:port] [delay]   (default localhost:8000, 1 s)
local csp = require "csp"

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("reverb2.lua [ADDR] [DELAY]", "the concurrent echo server (seed)")
f:arg("addr", "string", "localhost:8000", "host:port to listen on")
f:arg("delay", "number", 1, "seconds between two echoes", { positive = true })
local opts = f:parse(arg)
local addr, delay = opts.addr, opts.delay

-- fmt.Fprintln(c, "\t", s) puts a space between its operands: "\t s\n".
local function echo(c, shout, d)
  c:write("\t ", shout:upper(), "\n")
  csp.sleep(d)
  c:write("\t ", shout, "\n")
  csp.sleep(d)
  c:write("\t ", shout:lower(), "\n")
end

local function handle_conn(c)
  for line in c:lines() do
    csp.go(echo, c, line, delay)  -- the arguments are evaluated here, as in Go
  end
  -- NOTE: ignoring potential read errors
  c:close()
end

local listener, err = csp.net.listen("tcp", addr)
if not listener then
  io.stderr:write(err, "\n")
  os.exit(1)
end
while true do
  local conn, aerr = listener:accept()
  if not conn then
    io.stderr:write(aerr, "\n")
  else
    csp.go(handle_conn, conn)
  end
end
