-- bank_race: the unsynchronised bank of the Go book's section 9.1, caught by the race detector.
-- Alice and Bob deposit at the same time; each deposit reads the balance, does a blocking call
-- (a log line that could be a network write) and writes the balance back: one update is lost
-- whenever the scheduler switches in between. Run it as
--   CSP_RACE=1 lua5.4 examples/bank_race.lua
-- and the detector reports the race (exit status 66) on every run, even the lucky ones.
-- examples/bank1.lua and bank2.lua are the correct versions (a monitor goroutine, a mutex).
local csp = require "csp"
-- luacheck: globals balance

balance = 0 -- a global: shared by every goroutine, watched by the detector

local function deposit(amount)
  local b = balance
  csp.gosched() -- any blocking call: a log write, a channel operation, a lock
  balance = b + amount
end

local wg = csp.waitgroup()
wg:go(function() deposit(200) end) -- Alice
wg:go(function() deposit(100) end) -- Bob
wg:wait()
print("balance", balance) -- 100, not 300: both read 0, and Bob's write replaced Alice's
