-- Seed 1.8.2 select with several cases: with a buffer of 1 the channel is alternately
-- empty and full, so only one case is ever ready and this always prints 0 2 4 6 8.
local csp = require "csp"

local ch = csp.chan(1)
for i = 0, 9 do
  csp.select{
    csp.recv(ch, function(x) print(x) end),
    csp.send(ch, i),
  }
end
