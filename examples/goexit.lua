-- Seed 1.2.2 runtime.Goexit(): goexit ends the goroutine at once, yet its pending defers
-- (<close> variables) still run, innermost first; prints B.defer then A.defer.
local csp = require "csp"

local wait = csp.waitgroup()
wait:add(1)
csp.go(function()
  local _ <close> = csp.defer(function()
    print("A.defer")
    wait:done()
  end)
  ;(function()
    local _ <close> = csp.defer(print, "B.defer")
    csp.goexit() -- end the goroutine: nothing below runs
    local _ <close> = csp.defer(print, "C.defer")
    print("B")
  end)()
  print("A")
end)
wait:wait()
