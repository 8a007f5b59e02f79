-- Seed 2.2.1, bank2 (gopl.io/ch9/bank3): the balance is guarded by a mutex; every function
-- takes it, and a `<close>` variable releases it on every way out (Go's defer mu.Unlock()).
-- The critical sections yield (csp.gosched) between reading and writing the balance, which
-- is where another goroutine's update would be lost without the lock: with it, the final
-- balance of 1000 goroutines depositing 100 and withdrawing 60 each is exact.
-- Usage: lua5.4 examples/bank2.lua [GOROUTINES]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("bank2.lua [GOROUTINES]", "balance guarded by csp.mutex")
f:arg("goroutines", "int", 1000, "customers, each depositing 100 and withdrawing 60", { min = 1 })
local opts = f:parse(arg)

local mu = csp.mutex()  -- guards balance
local balance = 0

local function Deposit(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  local b = balance
  csp.gosched()  -- other goroutines run here; they wait for the lock
  balance = b + amount
end

local function Balance()
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  return balance
end

-- Withdraw keeps the lock for the whole operation (the check and the update), as bank4 does
-- it correctly; see bank3.lua for the attempt that reuses Deposit and deadlocks.
local function Withdraw(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  local b = balance
  csp.gosched()
  if b < amount then return false end  -- insufficient funds
  balance = b - amount
  return true
end

require("banktest").drive(opts.goroutines,
  { Deposit = Deposit, Withdraw = Withdraw, Balance = Balance })
