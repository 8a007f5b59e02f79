-- the sieve's floor: bench/sieve.lua with csp taken out. Its hand-offs must keep their order, so
-- this floor has bare channels (floor.c: unbuffered, of integers, one parked coroutine a side)
-- and a FIFO run queue resumed from C; the program is the same loops and calls; total ms.
local floor = require "bench.floor"

local q = os.getenv("BENCH_QUICK")
local N = (q and q ~= "" and q ~= "0") and 300 or 3000

local function generate(ch)
  local i = 2
  while true do
    ch:send(i)
    i = i + 1
  end
end

local function filter(inp, out, prime)
  while true do
    local i = inp:recv()
    if i % prime ~= 0 then
      out:send(i)
    end
  end
end

local prime
local main = coroutine.create(function()
  local ch = floor.chan()
  floor.go(generate, ch)
  for _ = 1, N do
    prime = ch:recv()
    local ch1 = floor.chan()
    floor.go(filter, ch, ch1, prime)
    ch = ch1
  end
end)
local t0 = floor.now()
floor.sched(main)
local dt = floor.now() - t0
assert(N ~= 3000 or prime == 27449, "3000th prime: got " .. tostring(prime))
print(string.format("RESULT sieve_floor %.1f ms", dt * 1e3))
