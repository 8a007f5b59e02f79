-- Seed 1.2.1 runtime.Gosched(): main yields so the "world" goroutine runs first.
-- csp runs goroutines only when main blocks or calls gosched, and its run queue is FIFO, so
-- the output is always: world, world, hello, hello.
local csp = require "csp"

csp.go(function(s)
  for _ = 1, 2 do
    print(s)
  end
end, "world")

for _ = 1, 2 do
  csp.gosched() -- let the goroutine run, then carry on
  print("hello")
end
