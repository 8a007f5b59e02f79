-- A CPU-bound pipeline split over threads: main cuts [2, N) into blocks (stage 1), worker
-- threads (csp.parallel, one per core) keep the primes of each block by trial division
-- (stage 2), and main puts the blocks back in order as they come (stage 3), printing how
-- many primes lie below N and the largest. Usage: lua5.4 examples/sieve_par.lua [N] [BLOCK]
local csp = require "csp"

local N = math.tointeger(tonumber(arg[1])) or 2000000
local BLOCK = math.tointeger(tonumber(arg[2])) or 20000

-- Stage 2, in a worker thread: the primes of block {index, lo, hi}.
local function primes_in(block)
  local index, lo, hi = block[1], block[2], block[3]
  local found = {}
  for n = lo, hi - 1 do
    local prime = n >= 2
    for d = 2, math.floor(math.sqrt(n)) do
      if n % d == 0 then prime = false; break end
    end
    if prime then found[#found + 1] = n end
  end
  return { index, found }
end

local blocks, results = csp.xchan(64), csp.xchan(64)
local nblocks = 0
for lo = 2, N - 1, BLOCK do nblocks = nblocks + 1 end

-- Stage 1.
csp.go(function()
  local i = 0
  for lo = 2, N - 1, BLOCK do
    i = i + 1
    blocks:send({ i, lo, math.min(lo + BLOCK, N) })
  end
  blocks:close()
end)
csp.go(csp.parallel, 0, primes_in, blocks, results)

-- Stage 3: blocks arrive in any order; count them in order.
local pending, nextb, count, largest = {}, 1, 0, nil
for r in results:range() do
  pending[r[1]] = r[2]
  while pending[nextb] do
    local found = pending[nextb]
    pending[nextb] = nil
    count = count + #found
    if #found > 0 then largest = found[#found] end
    nextb = nextb + 1
  end
end
assert(nextb == nblocks + 1, "a block went missing")
print(("%d primes below %d (largest %s) on %d threads"):format(count, N, tostring(largest), csp.maxthreads()))
