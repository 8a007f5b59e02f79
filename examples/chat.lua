-- Seed 1.11, chat: a chat server around a monitor goroutine. The broadcaster alone owns the set
-- of clients; connections talk to it over three channels (entering, leaving, messages). Each
-- connection has a reader (handle_conn) and a writer goroutine fed by its outgoing queue.
-- Beyond the seed (gopl exercises 8.13 and 8.15): a client whose outgoing queue is full is
-- dropped instead of stalling everyone, and a client silent for `idle` seconds is disconnected.
-- Usage: lua5.4 examples/chat.lua [host:port] [idle]   (default localhost:8000, 300 s)
local csp = require "csp"

local addr = arg[1] or "localhost:8000"
local idle = tonumber(arg[2]) or 300
local QUEUE = 64  -- outgoing messages a client may fall behind by

local entering = csp.chan()  -- new clients: { out = chan, conn = conn }
local leaving = csp.chan()
local messages = csp.chan()  -- all incoming client messages

local function broadcaster()
  local clients = {}  -- all connected clients
  -- The select's cases are made once, outside the loop: a message costs no table or closure.
  local cases = {
    csp.recv(messages, function(msg)
      -- Broadcast incoming message to all clients' outgoing message channels.
      for cli in pairs(clients) do
        if not cli.out:try_send(msg) then  -- its queue is full: drop it, never wait
          clients[cli] = nil
          cli.out:close()
          cli.conn:close()  -- its reader sees the close and announces the leave
        end
      end
    end),
    csp.recv(entering, function(cli)
      clients[cli] = true
    end),
    csp.recv(leaving, function(cli)
      if clients[cli] then  -- not already dropped
        clients[cli] = nil
        cli.out:close()
      end
    end),
  }
  while true do
    csp.select(cases)
  end
end

local function client_writer(conn, out)
  for msg in out:range() do
    conn:write(msg, "\n")  -- NOTE: ignoring network errors
  end
end

local function handle_conn(conn)
  local out = csp.chan(QUEUE)  -- outgoing client messages
  csp.go(client_writer, conn, out)

  local who = conn:remote_addr()
  out:send("You are " .. who)
  messages:send(who .. " has arrived")
  local cli = { out = out, conn = conn }
  entering:send(cli)

  conn:set_read_deadline(csp.now() + idle)
  while true do
    local line = conn:read_line()
    if not line then break end  -- end of input, an error, or idle too long
    messages:send(who .. ": " .. line)
    conn:set_read_deadline(csp.now() + idle)
  end

  leaving:send(cli)
  messages:send(who .. " has left")
  conn:close()
end

local listener, err = csp.net.listen("tcp", addr)
if not listener then
  io.stderr:write(err, "\n")
  os.exit(1)
end
csp.go(broadcaster)
while true do
  local conn, aerr = listener:accept()
  if not conn then
    io.stderr:write(aerr, "\n")
  else
    csp.go(handle_conn, conn)
  end
end
