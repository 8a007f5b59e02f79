-- Seed 2.2.1, the fix for bank3: split Deposit in two, an unexported deposit that assumes the
-- lock is held and does the work, and the exported Deposit that takes the lock and calls it.
-- Withdraw takes the lock once and uses deposit and the balance directly. 1000 goroutines
-- deposit 100 and withdraw 60 each; Withdraw's check and update are one critical section, so
-- no withdrawal overdraws and the final balance is exact.
-- Usage: lua5.4 examples/bank4.lua [GOROUTINES]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("bank4.lua [GOROUTINES]", "deposit assumes the lock is held")
f:arg("goroutines", "int", 1000, "customers, each depositing 100 and withdrawing 60", { min = 1 })
local opts = f:parse(arg)

local mu = csp.mutex()  -- guards balance
local balance = 0

-- This function requires that the lock be held.
local function deposit(amount)
  local b = balance
  csp.gosched()  -- others run meanwhile; they wait for the lock
  balance = b + amount
end

local function Deposit(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  deposit(amount)
end

local function Balance()
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  return balance
end

local function Withdraw(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  deposit(-amount)
  if balance < 0 then
    deposit(amount)
    return false  -- insufficient funds
  end
  return true
end

require("banktest").drive(opts.goroutines,
  { Deposit = Deposit, Withdraw = Withdraw, Balance = Balance })
