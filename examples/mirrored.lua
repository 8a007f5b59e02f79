-- Seed 1.5.2 buffered channels: mirroredQuery asks three mirrors at once and returns the
-- quickest response; the buffer of 3 lets the two slower senders finish instead of leaking.
local csp = require "csp"

-- Simulated network request: a random delay under 50 ms.
local function request(hostname)
  csp.sleep(math.random() * 0.05)
  return "response from " .. hostname
end

local function mirrored_query()
  local responses = csp.chan(3)
  csp.go(function() responses:send(request("asia.gopl.io")) end)
  csp.go(function() responses:send(request("europe.gopl.io")) end)
  csp.go(function() responses:send(request("americas.gopl.io")) end)
  return (responses:recv()) -- the quickest response
end

print(mirrored_query())
