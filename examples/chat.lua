-- Seed 1.11, chat: a chat server around a monitor goroutine. The broadcaster alone owns the set
-- of clients; connections talk to it over three channels (entering, leaving, messages). Each
-- connection has a reader (handle_conn) and a writer goroutine fed by its outgoing queue.
-- Beyond the seed (gopl exercises 8.13 and 8.15): a slow client, one that does not take a
-- message within `slow` seconds, is dropped instead of stalling everyone for ever, and a client
-- silent for `idle` seconds is disconnected. Slow means slow to read: the broadcaster sends
-- into the client's queue and, when the queue is full, waits up to `slow` for its writer to make
-- room (a select over the send and a timer), as Go's blocking send would wait; a burst of
-- messages that fills every queue before the writers had a turn drops nobody.
-- Usage: lua5.4 examples/chat.lua [-stats] [host:port] [idle] [slow]   (default localhost:8000, 300 s, 2 s)
-- -stats prints the runtime's metrics (csp.stats()) on stderr every 5 seconds.
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("chat.lua [-stats] [ADDR] [IDLE] [SLOW]", "the chat server (seed 1.11)")
f:flag("stats", "bool", false, "print the runtime's metrics (csp.stats()) on stderr every 5 s")
f:arg("addr", "string", "localhost:8000", "host:port to listen on")
f:arg("idle", "number", 300, "seconds of silence before a client is disconnected", { positive = true })
f:arg("slow", "number", 2, "seconds a client may take to accept a message before it is dropped",
  { positive = true })
local opts = f:parse(arg)

local addr, idle, slow = opts.addr, opts.idle, opts.slow
local QUEUE = 64  -- outgoing messages a client's writer may fall behind by without waiting

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
        -- A full queue: let its writer drain it (the select lets every goroutine run), for
        -- at most `slow` seconds; a client that still takes nothing is dropped.
        if not cli.out:try_send(msg)
            and csp.select{ csp.send(cli.out, msg), csp.recv(csp.after(slow)) } == 2 then
          clients[cli] = nil  -- removing the current key during pairs is allowed
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

-- The messages that queued up while the writer waited go out with the first one, as one write:
-- a burst of broadcasts costs each client one syscall, not one per message.
local function client_writer(conn, out)
  local batch = {}
  for msg in out:range() do
    local n = 1
    batch[1] = msg
    while n < QUEUE do
      local more, ok = out:try_recv()
      if not ok then break end  -- empty (or closed: the range ends next)
      n = n + 1
      batch[n] = more
    end
    if n == 1 then
      conn:write(msg, "\n")  -- NOTE: ignoring network errors
    else
      conn:write(table.concat(batch, "\n", 1, n), "\n")
    end
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
if opts.stats then
  csp.go(function()
    for _ in csp.tick(5):range() do
      local s = csp.stats()
      local by = {}
      for reason, n in pairs(s.blocked_by) do by[#by + 1] = ("%s=%d"):format(reason, n) end
      table.sort(by)
      io.stderr:write(("stats: goroutines=%d runnable_max=%d blocked{%s} timers=%d chan_buffered=%d (%d B) "
        .. "loop_lag p50=%.1fus p99=%.1fus\n"):format(s.goroutines, s.runnable_max, table.concat(by, " "),
        s.timer_heap, s.chan_buffered, s.chan_buffered_bytes, s.loop_lag_p50 * 1e6, s.loop_lag_p99 * 1e6))
    end
  end)
end
while true do
  local conn, aerr = listener:accept()
  if not conn then
    io.stderr:write(aerr, "\n")
  else
    csp.go(handle_conn, conn)
  end
end
