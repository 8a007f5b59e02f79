-- sieve: the concurrent prime sieve of golang.org/doc/play/sieve.go, first
-- 3000 primes; total ms. Runs on the main thread: the generator and filters
-- never end, so csp.run would not return; they are abandoned at exit, as in Go.
local csp = require "csp"

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

local t0 = csp.now()
local ch = csp.chan()
csp.go(generate, ch)
local prime
for _ = 1, N do
  prime = ch:recv()
  local ch1 = csp.chan()
  csp.go(filter, ch, ch1, prime)
  ch = ch1
end
local dt = csp.now() - t0
assert(N ~= 3000 or prime == 27449, "3000th prime: got " .. tostring(prime))
print(string.format("RESULT sieve %.1f ms", dt * 1e3))
