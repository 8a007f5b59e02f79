-- Seed 1.5.2, the bug the note warns about: mirroredQuery with an UNBUFFERED channel.
-- Nobody receives the two slower responses, so their goroutines stay blocked in
-- `chan send` forever (a goroutine leak); csp.dump() shows them.
local csp = require "csp"

local MAX_DELAY = 0.05

-- Simulated network request: a random delay under MAX_DELAY.
local function request(hostname)
  csp.sleep(math.random() * MAX_DELAY)
  return "response from " .. hostname
end

local function mirrored_query()
  local responses = csp.chan() -- BUG: unbuffered
  csp.go(function() responses:send(request("asia.gopl.io")) end)
  csp.go(function() responses:send(request("europe.gopl.io")) end)
  csp.go(function() responses:send(request("americas.gopl.io")) end)
  return (responses:recv())
end

print(mirrored_query())
-- Wait until every request has answered: the two slow ones are now stuck in their send.
csp.sleep(2 * MAX_DELAY)
print(("goroutines still alive: %d (main included)"):format(csp.numgoroutine()))
print((csp.dump():gsub("\n$", "")))
