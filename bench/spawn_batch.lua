-- spawn_batch: N goroutines in batches of 1000; each sends on a buffered done
-- channel, main receives the batch before starting the next. ns per goroutine
-- for create + run + exit with at most 1000 alive (spawn.lua keeps all alive).
local csp = require "csp"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 100000 or 1000000
local B = 1000
N = N // B * B

csp.run(function()
  local done = csp.chan(B)
  local function worker()
    done:send(true)
  end
  local t0 = csp.now()
  for _ = 1, N // B do
    for _ = 1, B do
      csp.go(worker)
    end
    for _ = 1, B do
      done:recv()
    end
  end
  local dt = csp.now() - t0
  print(string.format("RESULT spawn_batch %.1f ns/op", dt * 1e9 / N))
end)
