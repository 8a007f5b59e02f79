-- Go's concurrent prime sieve: a generator goroutine feeds a chain of filter goroutines,
-- one per prime found; prints the first N primes (N = arg[1], default 10).
local csp = require "csp"

-- Sends 2, 3, 4, ... to ch.
local function generate(ch)
  local i = 2
  while true do
    ch:send(i)
    i = i + 1
  end
end

-- Copies the values from src to dst, dropping those divisible by prime.
local function filter(src, dst, prime)
  while true do
    local i = src:recv()
    if i % prime ~= 0 then
      dst:send(i)
    end
  end
end

package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("sieve.lua [N]", "Go's concurrent prime sieve")
f:arg("n", "int", 10, "how many primes to print", { min = 0 })
local n = f:parse(arg).n
local ch = csp.chan()
csp.go(generate, ch:sender())
for _ = 1, n do
  local prime = ch:recv()
  print(prime)
  local ch1 = csp.chan()
  csp.go(filter, ch:receiver(), ch1:sender(), prime)
  ch = ch1
end
-- The generator and the filters stay blocked; they are abandoned when main ends, as in Go.
